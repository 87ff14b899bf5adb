"""Does the cost grow linearly? Sharded extraction throughput and memory vs dataset size and
workers, and the training step rate on 1 vs 2 (logical) devices.

Usage (from the project root)::

    uv run python benchmarks/scale.py                                  # 1k, 4k, 16k x 3 s clips; 1 and 2 workers
    uv run python benchmarks/scale.py --clips 500 2000 --workers 1 2 --json reports/scale.json
    uv run python benchmarks/scale.py --skip-train                     # extraction only

What it does, in a temporary directory removed at the end:

* writes ``--distinct`` synthetic clips (``--seconds`` long, 22.05 kHz 16-bit WAV: tones, noise,
  clicks; distinct seeds) and a track table of N rows cycling over them (so 16k clips need only
  ``--distinct`` files on disk; every track is decoded and transformed anew, the files stay in the
  page cache: the figures are CPU cost, not disk cost);
* for every N in ``--clips`` and W in ``--workers``: a fresh process starts a Dask LocalCluster of
  W single-threaded worker processes and runs :func:`mgr.distributed.shards.build_sharded_store`
  on it through its address (the remote-cluster code path) with the default front end (log-mel,
  128 mels, n_fft 2048, hop 512) and ``--shard-tracks`` tracks per shard; it reports wall seconds,
  clips/s, the CPU seconds and peak RSS of the worker processes and of the driver, and the
  store's size;
* least-squares slopes over N: wall seconds per clip, worker CPU seconds per clip (robust to other
  load on a shared machine), worker peak MiB per 1k
  clips (flat means ~0), driver MiB per 1k clips (its per-track metadata);
* training: ``tests/_distributed_train.py`` in a fresh process with the CPU split into 2 logical
  devices: cnn2d steps/s under ``train.distribution: none``, ``mirrored`` over 1 device and over 2.
  Two logical CPU devices share the same cores, so this measures the strategy's overhead, not a
  GPU speed-up (no GPU here).

Numbers depend on the machine and its other load; the JSON records the host and what was run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SR = 22050


def write_clips(d: Path, n: int, seconds: float) -> list[Path]:
    import soundfile as sf

    d.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SR * seconds)) / SR
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        y = 0.2 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.standard_normal(t.size)
        y[:: int(SR * 60 / rng.uniform(70, 180))] += 0.8
        p = d / f"clip{i:04d}.wav"
        sf.write(p, np.clip(y, -1, 1).astype(np.float32), SR, subtype="PCM_16")
        out.append(p)
    return out


def track_table(files: list[Path], n: int, seconds: float) -> str:
    import pandas as pd

    rows = [{"track_id": f"t{i:07d}", "path": str(files[i % len(files)]), "genre": f"g{i % 4}",
             "split": ("train", "train", "train", "val", "test")[i % 5], "fold": -1} for i in range(n)]
    return pd.DataFrame(rows).to_json(orient="records")


def child_extract(args: argparse.Namespace) -> None:
    """In a fresh process: one (N, W) extraction on a local cluster reached by address."""
    import pandas as pd
    from distributed import Client, LocalCluster

    from mgr.distributed.engine import SCHEDULER_ENV, _worker_setup
    from mgr.distributed.shards import build_sharded_store, shard_dir
    from mgr.params import AudioParams, SpectrogramParams

    tracks = pd.read_json(Path(args.table), orient="records", dtype={"track_id": str})
    out = Path(args.out)
    with LocalCluster(n_workers=args.w, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, local_directory=str(out.parent / "dask")) as cluster, \
            Client(cluster) as c:
        c.run(_worker_setup)
        os.environ[SCHEDULER_ENV] = cluster.scheduler_address
        t0 = time.perf_counter()
        rep = build_sharded_store(tracks, AudioParams(sample_rate=SR), SpectrogramParams(), out,
                                  shard_tracks=args.shard_tracks, workers=args.w)
        wall = time.perf_counter() - t0
        use = c.run(_usage)
    rss = {k: v[0] for k, v in use.items()}
    me = resource.getrusage(resource.RUSAGE_SELF)
    size = out.stat().st_size + sum(f.stat().st_size for f in shard_dir(out).glob("*"))
    print(json.dumps({
        "clips": len(tracks), "workers": args.w, "seconds": round(wall, 3),
        "clips_per_s": round(len(tracks) / wall, 2), "n_shards": rep["n_shards"],
        # CPU seconds (user + sys) of all workers / of the driver: robust to other load on the machine
        "worker_cpu_s": round(sum(v[1] for v in use.values()), 3), "driver_cpu_s": round(me.ru_utime + me.ru_stime, 3),
        "worker_peak_rss_mb": sorted(round(v, 1) for v in rss.values()),
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "store_mb": round(size / 2**20, 2), "total_frames": rep["total_frames"],
    }))


def _usage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_maxrss / 1024, r.ru_utime + r.ru_stime


def slope(x: list[float], y: list[float]) -> float | None:
    if len(set(x)) < 2:
        return None
    return float(np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)[0])


def run_extraction(tmp: Path, files: list[Path], sizes: list[int], workers: list[int], args) -> list[dict]:
    res = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "DASK_TEMPORARY_DIRECTORY": str(tmp / "dask")}
    for n in sizes:
        table = tmp / f"tracks_{n}.json"
        table.write_text(track_table(files, n, args.seconds))
        for w in workers:
            out = tmp / f"run_{n}_{w}" / "spectrograms.h5"
            out.parent.mkdir(parents=True)
            p = subprocess.run([sys.executable, __file__, "--_child", "--table", str(table), "--out", str(out),
                                "--w", str(w), "--shard-tracks", str(args.shard_tracks)],
                               capture_output=True, text=True, env=env, check=False)
            if p.returncode != 0:
                sys.exit(f"extraction run n={n} w={w} failed:\n{p.stderr[-3000:]}")
            r = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"  {n:>6} clips x {w} worker(s): {r['seconds']:8.2f} s  {r['clips_per_s']:8.1f} clips/s  "
                  f"worker CPU {r['worker_cpu_s']:.1f} s  worker peak {r['worker_peak_rss_mb']} MiB  driver peak {r['driver_peak_rss_mb']} MiB  "
                  f"store {r['store_mb']} MiB", flush=True)
            res.append(r)
            shutil.rmtree(out.parent)
    return res


def summarize(res: list[dict]) -> dict:
    out = {}
    for w in sorted({r["workers"] for r in res}):
        rs = [r for r in res if r["workers"] == w]
        n = [r["clips"] for r in rs]
        s = slope(n, [r["seconds"] for r in rs])
        out[f"workers_{w}"] = {
            "seconds_per_clip_slope": None if s is None else round(s, 6),
            "worker_cpu_seconds_per_clip_slope": None if len(rs) < 2 else
            round(slope(n, [r["worker_cpu_s"] for r in rs]), 6),
            "worker_peak_mb_per_1k_clips_slope": None if len(rs) < 2 else
            round(1000 * slope(n, [max(r["worker_peak_rss_mb"]) for r in rs]), 3),
            "driver_peak_mb_per_1k_clips_slope": None if len(rs) < 2 else
            round(1000 * slope(n, [r["driver_peak_rss_mb"] for r in rs]), 3),
            "store_mb_per_clip": round(rs[-1]["store_mb"] / rs[-1]["clips"], 5),
        }
    ws = sorted({r["workers"] for r in res})
    if len(ws) > 1:
        for n in sorted({r["clips"] for r in res}):
            t = {r["workers"]: r["seconds"] for r in res if r["clips"] == n}
            out.setdefault("speedup", {})[str(n)] = round(t[ws[0]] / t[ws[-1]], 3)
    return out


def run_training(tmp: Path, files: list[Path], args) -> dict:
    import pandas as pd

    from mgr.distributed.shards import build_sharded_store
    from mgr.params import AudioParams, SpectrogramParams

    tracks = pd.read_json(__import__("io").StringIO(track_table(files, len(files), args.seconds)),
                          orient="records", dtype={"track_id": str})
    store = tmp / "train" / "spectrograms.h5"
    build_sharded_store(tracks, AudioParams(sample_rate=SR), SpectrogramParams(), store, shard_tracks=16, workers=1)
    out = tmp / "train.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, str(ROOT / "tests" / "_distributed_train.py"), str(store), "2",
                    str(args.train_epochs), str(args.train_steps), str(out)], check=True, env=env,
                   capture_output=True)
    r = json.loads(out.read_text())
    res = {k: {"replicas": v["replicas"], "steps_per_second": round(v["steps_per_second"], 2),
               "train_seconds": v["train_seconds"]} for k, v in r.items() if isinstance(v, dict)}
    for k, v in res.items():
        print(f"  train {k:<11} {v['replicas']} replica(s): {v['steps_per_second']:6.2f} steps/s", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shard-tracks", type=int, default=128)
    ap.add_argument("--distinct", type=int, default=64, help="distinct audio files the tracks cycle over")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--train-epochs", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--table", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--w", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args._child:
        child_extract(args)
        return
    from mgr.runs import host_facts

    tmp = Path(tempfile.mkdtemp(prefix="mgr-scale-"))
    try:
        (tmp / "dask").mkdir()
        files = write_clips(tmp / "audio", args.distinct, args.seconds)
        print(f"extraction: {args.clips} clips x {args.seconds:g} s, workers {args.workers}, "
              f"{args.shard_tracks} tracks/shard, {os.cpu_count()} CPUs", flush=True)
        ext = run_extraction(tmp, files, args.clips, args.workers, args)
        summary = summarize(ext)
        print(json.dumps(summary, indent=1))
        train = {} if args.skip_train else run_training(tmp, files, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"ran": {"clips": args.clips, "seconds": args.seconds, "workers": args.workers,
                      "shard_tracks": args.shard_tracks, "distinct_files": args.distinct,
                      "train_epochs": args.train_epochs, "train_steps": args.train_steps},
              "host": host_facts(), "extraction": ext, "summary": summary, "training": train}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
