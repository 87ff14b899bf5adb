"""mgr.distributed: sharded extraction on Dask (inline, local cluster, a cluster on 127.0.0.1).

The sharded store must be byte-identical for 1 worker, 2 local workers and a separately started
2-worker cluster reached by address (``MGR_SCHEDULER``), equal in content to the one-file store,
readable through :class:`SpectrogramStore`, and resumable shard by shard.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mgr.distributed.engine import SCHEDULER_ENV, map_tasks, scheduler_address
from mgr.distributed.shards import build_sharded_store, shard_dir, shard_ranges
from mgr.distributed.tables import build_sharded_feature_table
from mgr.features.extract import load_inputs
from mgr.features.store import SpectrogramStore, build_store
from mgr.features.tables import build_feature_table, read_feature_table
from mgr.params import AudioParams, SpectrogramParams

SR = 8000
AUDIO = AudioParams(sample_rate=SR)
SPEC = SpectrogramParams(n_fft=256, hop_length=128, n_mels=32, top_db=80.0)


def _dataset(d: Path, n: int = 11) -> pd.DataFrame:
    """``n`` short clips of different lengths (+ one corrupt file), two genres, all three splits."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, split = [], []
    parts = ["train", "train", "train", "val", "test"]
    for i in range(n):
        t = np.arange(int(SR * (0.5 + 0.1 * i))) / SR
        y = 0.3 * np.sin(2 * np.pi * (150 + 90 * i) * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(d / f"c{i:02d}.wav", y.astype(np.float32), SR)
        rows.append({"track_id": f"t{i:02d}", "path": f"c{i:02d}.wav", "genre": "ab"[i % 2],
                     "duration_s": t.size / SR, "sample_rate": SR, "channels": 1})
        split.append({"track_id": f"t{i:02d}", "split": parts[i % len(parts)]})
    (d / "bad.wav").write_bytes(b"RIFF" + b"\x00junk" * 30)
    rows.append({"track_id": "t05x", "path": "bad.wav", "genre": "a", "duration_s": 1.0, "sample_rate": SR,
                 "channels": 1})
    split.append({"track_id": "t05x", "split": "train"})
    pd.DataFrame(rows).to_csv(d / "tracks.csv", index=False)
    pd.DataFrame(split).to_csv(d / "split.csv", index=False)
    return load_inputs(d / "tracks.csv", d / "split.csv")


def _digest(out: Path) -> dict[str, str]:
    files = [out, *sorted(shard_dir(out).glob("*"))]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def tracks(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("audio"))


@pytest.fixture
def cluster_address(tmp_path_factory):
    """A 2-worker Dask cluster on 127.0.0.1 in separate processes (scheduler + 2 workers)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    bindir = Path(sys.executable).parent
    scratch = tmp_path_factory.mktemp("dask-workers")
    env["DASK_TEMPORARY_DIRECTORY"] = str(scratch)  # no dask-scratch-space left in /tmp
    sched = subprocess.Popen([str(bindir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                              "--dashboard-address", "127.0.0.1:0", "--no-show"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    procs = [sched]
    try:
        addr = None
        t0 = time.time()
        while addr is None and time.time() - t0 < 60:
            line = sched.stderr.readline()
            if "Scheduler at:" in line:
                addr = line.split("Scheduler at:")[1].strip()
        assert addr, "the dask scheduler did not start"
        for _ in range(2):
            procs.append(subprocess.Popen([str(bindir / "dask"), "worker", addr, "--nthreads", "1",
                                           "--no-dashboard", "--host", "127.0.0.1", "--death-timeout", "30",
                                           "--local-directory", str(scratch)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        from distributed import Client

        with Client(addr, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


def test_shard_ranges_fixed_whatever_the_workers():
    assert shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_ranges(3, 8) == [(0, 3)]
    with pytest.raises(ValueError):
        shard_ranges(3, 0)


def test_scheduler_address_env_wins(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert scheduler_address(None) is None
    assert scheduler_address("tcp://10.0.0.1:8786") == "tcp://10.0.0.1:8786"
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://127.0.0.1:1")
    assert scheduler_address("tcp://10.0.0.1:8786") == "tcp://127.0.0.1:1"


def test_inline_map_needs_no_cluster():
    out = []
    facts = map_tasks(lambda x: x * 2, [1, 2, 3], out.append, workers=1)
    assert out == [2, 4, 6] and facts["engine"] == "inline"


def test_sharded_store_equals_the_one_file_store(tracks, tmp_path):
    one = build_store(tracks, AUDIO, SPEC, tmp_path / "one.h5", workers=1, progress=False)
    rep = build_sharded_store(tracks, AUDIO, SPEC, tmp_path / "sh.h5", shard_tracks=4, workers=1)
    assert rep["n_shards"] == 3 and rep["workers"]["shards_computed"] == 3
    assert rep["content_hash"] == one["content_hash"]
    assert rep["n_skipped"] == 1 and rep["skipped"][0]["track_id"] == "t05x"
    with SpectrogramStore(tmp_path / "one.h5") as a, SpectrogramStore(tmp_path / "sh.h5") as b:
        assert b.memmapped  # every shard memory-mapped
        assert list(a.track_ids) == list(b.track_ids) and np.array_equal(a.offset, b.offset)
        for i in range(len(a)):
            np.testing.assert_array_equal(a.track(i), b.track(i))
        for x, y in zip(a.stats(), b.stats()):
            np.testing.assert_array_equal(x, y)
        idx = b.indices("train")
        xa, ta = a.random_windows(idx, 16, 8, rng=0)
        xb, tb = b.random_windows(idx, 16, 8, rng=0)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(a.track_windows(3, 8), b.track_windows(3, 8))


def test_compressed_shards_read_through_h5py(tracks, tmp_path):
    from dataclasses import replace

    sp = replace(SPEC, compression="gzip")
    build_store(tracks, AUDIO, sp, tmp_path / "one.h5", workers=1, progress=False)
    build_sharded_store(tracks, AUDIO, sp, tmp_path / "sh.h5", shard_tracks=5, workers=1)
    with SpectrogramStore(tmp_path / "one.h5") as a, SpectrogramStore(tmp_path / "sh.h5") as b:
        assert not b.memmapped
        for i in range(len(a)):
            np.testing.assert_array_equal(a.track(i), b.track(i))


def test_store_moves_with_its_shards(tracks, tmp_path):
    build_sharded_store(tracks, AUDIO, SPEC, tmp_path / "a" / "s.h5", shard_tracks=4, workers=1)
    (tmp_path / "a").rename(tmp_path / "b")  # e.g. a dvc checkout elsewhere
    with SpectrogramStore(tmp_path / "b" / "s.h5") as s:
        assert s.track(0).shape[0] == 32 and np.isfinite(s.track(len(s) - 1)).all()


def test_failed_shard_is_recomputed_alone(tracks, tmp_path):
    out = tmp_path / "s.h5"
    build_sharded_store(tracks, AUDIO, SPEC, out, shard_tracks=4, workers=1)
    before = _digest(out)
    (shard_dir(out) / "shard-00001.h5").unlink()  # a lost / failed shard
    (shard_dir(out) / "shard-00002.h5").write_bytes(b"half a file")  # a torn one
    rep = build_sharded_store(tracks, AUDIO, SPEC, out, shard_tracks=4, workers=1)
    assert rep["workers"]["shards_computed"] == 2
    assert _digest(out) == before


def test_byte_identical_for_1_and_2_workers_and_a_cluster(tracks, tmp_path, cluster_address, monkeypatch):
    """The tested promise: the same bytes whatever runs the shards."""
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    r1 = build_sharded_store(tracks, AUDIO, SPEC, tmp_path / "w1" / "s.h5", shard_tracks=3, workers=1)
    r2 = build_sharded_store(tracks, AUDIO, SPEC, tmp_path / "w2" / "s.h5", shard_tracks=3, workers=2)
    monkeypatch.setenv(SCHEDULER_ENV, cluster_address)
    rc = build_sharded_store(tracks, AUDIO, SPEC, tmp_path / "cl" / "s.h5", shard_tracks=3, workers=1)
    facts = [r["workers"] for r in (r1, r2, rc)]
    assert [f["engine"] for f in facts] == ["inline", "local", "remote"]
    assert [f["workers"] for f in facts] == [1, 2, 2]
    d1, d2, dc = (_digest(tmp_path / w / "s.h5") for w in ("w1", "w2", "cl"))
    assert len(d1) == 1 + 4 and d1 == d2 == dc
    # feature tables (the gtzan57 set) too, and equal in content to the one-process table
    f1 = build_sharded_feature_table(tracks, AUDIO, "gtzan57", tmp_path / "w1" / "f.parquet", shard_tracks=3,
                                     workers=1)
    fc = build_sharded_feature_table(tracks, AUDIO, "gtzan57", tmp_path / "cl" / "f.parquet", shard_tracks=3,
                                     workers=1)
    monkeypatch.delenv(SCHEDULER_ENV)
    f2 = build_sharded_feature_table(tracks, AUDIO, "gtzan57", tmp_path / "w2" / "f.parquet", shard_tracks=3,
                                     workers=2)
    assert f1["n_tracks"] == fc["n_tracks"] == f2["n_tracks"] == len(tracks) - 1
    raw = [(tmp_path / w / "f.parquet").read_bytes() for w in ("w1", "w2", "cl")]
    assert raw[0] == raw[1] == raw[2]
    build_feature_table(tracks, AUDIO, "gtzan57", tmp_path / "one.parquet", workers=1, progress=False)
    pd.testing.assert_frame_equal(read_feature_table(tmp_path / "w1" / "f.parquet"),
                                  read_feature_table(tmp_path / "one.parquet"))


def test_feeder_reads_the_sharded_store_like_one_file(tracks, tmp_path):
    from mgr.models.feeder import window_feeder

    build_store(tracks, AUDIO, SPEC, tmp_path / "one.h5", workers=1, progress=False)
    build_sharded_store(tracks, AUDIO, SPEC, tmp_path / "sh.h5", shard_tracks=2, workers=1)
    with SpectrogramStore(tmp_path / "one.h5") as a, SpectrogramStore(tmp_path / "sh.h5") as b:
        kw = dict(window_frames=6, batch_size=8, steps=3, seed=5)
        fa, fb = window_feeder(a, a.indices("train"), **kw), window_feeder(b, b.indices("train"), **kw)
        for k in range(3):
            np.testing.assert_array_equal(fa[k], fb[k])


_HOLD = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from mgr.distributed.engine import client
if __name__ == "__main__":
    with client(2) as c:
        print(" ".join(str(p) for p in c.run(os.getpid).values()), flush=True)
        time.sleep(120)
"""


def test_local_workers_die_with_their_parent(tmp_path):
    """A kill -9 of the stage leaves no worker running (PR_SET_PDEATHSIG). (Its few-KiB scratch
    folder, ``$TMPDIR/mgr-dask-*``, removed on any normal or failed exit, cannot be removed after a
    kill -9: here it goes to this test's tmp_path.)"""
    import signal

    script = tmp_path / "hold.py"
    script.write_text(_HOLD)
    p = subprocess.Popen([sys.executable, str(script), str(Path(__file__).parents[1] / "src")],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        pids = [int(x) for x in p.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    deadline = time.time() + 20
    alive = pids
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [q for q in pids if Path(f"/proc/{q}").exists() and "Z" not in _state(q)]
    assert not alive, f"workers {alive} outlived their parent"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_one_file_mode_leaves_an_empty_shards_folder(tmp_path):
    """The shards folder is a DVC output of the stage in both modes: empty (stale shards of an
    earlier sharded run removed) when the store is one file."""
    from mgr.distributed.engine import empty_shard_dir, shard_dir

    out = tmp_path / "spectrograms.h5"
    d = shard_dir(out)
    d.mkdir()
    (d / "shard-00000.h5").write_bytes(b"stale")
    (d / "tmpdir").mkdir()
    assert empty_shard_dir(out) == d and d.is_dir() and list(d.iterdir()) == []
    assert empty_shard_dir(tmp_path / "features.parquet").name == "features.shards"
