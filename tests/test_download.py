"""mgr.data.download: resume with HTTP Range, retries, timeouts, checksums, local sources."""

from __future__ import annotations

import hashlib
import os

import pytest
from _fetch_helpers import serve

from mgr.data.download import download, verify_checksum
from mgr.errors import DataError

PAYLOAD = os.urandom(300_000)


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "blob.bin").write_bytes(PAYLOAD)
    return root


def test_download_plain_with_checksums(served, tmp_path):
    with serve(served) as (url, state):
        out = download(f"{url}/blob.bin", tmp_path / "dl" / "blob.bin", md5=hashlib.md5(PAYLOAD).hexdigest(),
                       sha1=hashlib.sha1(PAYLOAD).hexdigest(), progress=False)
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "dl" / "blob.bin.part").exists()
    assert state.requests == [("/blob.bin", None)]


def test_resume_after_connection_dropped_halfway(served, tmp_path):
    dest = tmp_path / "blob.bin"
    with serve(served, drop_first=1) as (url, state):
        download(f"{url}/blob.bin", dest, sha1=hashlib.sha1(PAYLOAD).hexdigest(), progress=False, backoff=0.01)
    assert dest.read_bytes() == PAYLOAD
    # first request without Range, then one continuing from the half that arrived
    assert state.requests[0] == ("/blob.bin", None)
    assert len(state.requests) == 2
    assert state.requests[1][1] == f"bytes={len(PAYLOAD) // 2}-"


def test_resume_across_calls_from_part_file(served, tmp_path):
    dest = tmp_path / "blob.bin"
    part = tmp_path / "blob.bin.part"
    part.write_bytes(PAYLOAD[:100_000])  # left by an earlier, killed run
    with serve(served) as (url, state):
        download(f"{url}/blob.bin", dest, md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert state.requests == [("/blob.bin", "bytes=100000-")]
    assert not part.exists()


def test_server_without_range_support_restarts_cleanly(served, tmp_path):
    dest = tmp_path / "blob.bin"
    (tmp_path / "blob.bin.part").write_bytes(b"garbage" * 100)
    with serve(served, range_support=False) as (url, _):
        download(f"{url}/blob.bin", dest, md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_is_clear_and_removes_the_file(served, tmp_path):
    dest = tmp_path / "blob.bin"
    wrong = "0" * 32
    with serve(served) as (url, _), pytest.raises(DataError) as ei:
        download(f"{url}/blob.bin", dest, md5=wrong, progress=False)
    msg = str(ei.value)
    assert "checksum mismatch for blob.bin" in msg
    assert wrong in msg and hashlib.md5(PAYLOAD).hexdigest() in msg
    assert not dest.exists() and not (tmp_path / "blob.bin.part").exists()


def test_http_404_is_a_data_error(served, tmp_path):
    with serve(served) as (url, state), pytest.raises(DataError, match="HTTP 404"):
        download(f"{url}/missing.tar.gz", tmp_path / "x", progress=False, backoff=0.01)
    assert len(state.requests) == 1  # not retried


def test_stalled_server_times_out_then_gives_up(served, tmp_path):
    with serve(served, stall_s=1.0) as (url, state), pytest.raises(DataError, match="failed after 1 retries"):
        download(f"{url}/blob.bin", tmp_path / "blob.bin", timeout=0.2, retries=1, progress=False, backoff=0.01)
    assert len(state.requests) == 2


def test_existing_good_file_is_not_downloaded_again(served, tmp_path):
    dest = tmp_path / "blob.bin"
    dest.write_bytes(PAYLOAD)
    with serve(served) as (url, state):
        download(f"{url}/blob.bin", dest, md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
    assert state.requests == []


def test_local_path_and_file_url(served, tmp_path):
    src = served / "blob.bin"
    a = download(str(src), tmp_path / "a.bin", sha1=hashlib.sha1(PAYLOAD).hexdigest(), progress=False)
    b = download(src.as_uri(), tmp_path / "b.bin", progress=False)
    assert a.read_bytes() == PAYLOAD == b.read_bytes()
    with pytest.raises(DataError, match="checksum mismatch"):
        download(str(src), tmp_path / "c.bin", sha1="1" * 40, progress=False)
    assert not (tmp_path / "c.bin").exists()
    with pytest.raises(DataError, match="does not exist"):
        download(str(tmp_path / "nope.bin"), tmp_path / "d.bin", progress=False)


def test_verify_checksum_names_file(tmp_path):
    f = tmp_path / "genres.tar.gz"
    f.write_bytes(b"abc")
    verify_checksum(f, md5=hashlib.md5(b"abc").hexdigest())
    with pytest.raises(DataError, match=r"genres\.tar\.gz: expected md5"):
        verify_checksum(f, md5="f" * 32)
    assert f.exists()  # not removed unless asked


def test_unknown_host_fails_fast_without_retries(tmp_path):
    import time

    t = time.time()
    with pytest.raises(DataError, match="cannot resolve host"):
        download("http://no-such-host.invalid/x.zip", tmp_path / "x.zip", progress=False, backoff=5)
    assert time.time() - t < 4  # no backoff sleeps
