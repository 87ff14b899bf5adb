"""Throughput of the spectrogram stage vs a naive librosa loop and a decode+FFT floor.

Usage (from the project root)::

    uv run python benchmarks/extract.py --clips 200 --seconds 10 --workers 2
    uv run python benchmarks/extract.py --clips 2000 --seconds 5 --rss-only   # peak RSS on 2000 clips

It writes ``--clips`` synthetic FLAC clips (tones + noise + clicks from numpy, 22.05 kHz mono,
deterministic) to a scratch folder with a ``tracks.csv`` and ``split.csv``, then measures on the
same files, in the same run:

* **stage**: :func:`mgr.spectrogram.build_store` (parallel workers, streamed into HDF5), run in a
  child process so its peak RSS (main process and largest worker) is measured on its own;
* **naive**: one process, per file ``librosa.load`` + ``librosa.feature.melspectrogram`` +
  ``librosa.power_to_db`` + ``np.save`` (the usual tutorial loop);
* **floor**: one process, per file ``soundfile.read`` + framing + ``numpy.fft.rfft`` only (no
  resampling, mel or dB, nothing written): the cost of merely decoding and transforming.

Prints clips/s for each and the ratios stage/naive and stage/floor (wall clock), and the CPU
seconds of each (user + sys, workers included): on a shared, oversubscribed machine the wall-clock
speed-up from parallel workers disappears, the CPU-time ratio does not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 22050


def make_clips(folder: Path, n: int, seconds: float, seed: int = 0) -> None:
    import pandas as pd
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    rows, split = [], []
    for i in range(n):
        f0 = rng.uniform(80, 1000)
        bpm = rng.uniform(70, 160)
        y = 0.2 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 2.01 * f0 * t)
        y += 0.02 * rng.standard_normal(t.size)
        clicks = (np.mod(t, 60.0 / bpm) < 0.01) * rng.uniform(0.2, 0.5)
        y = np.clip(y + clicks, -1, 1).astype(np.float32)
        name = f"clip{i:05d}.flac"
        sf.write(folder / name, y, SR)
        rows.append({"track_id": f"c{i:05d}", "path": name, "genre": f"g{i % 10}", "duration_s": seconds,
                     "sample_rate": SR, "channels": 1})
        split.append({"track_id": f"c{i:05d}", "split": "train" if i % 10 < 7 else ("val" if i % 10 == 7 else "test")})
    pd.DataFrame(rows).to_csv(folder / "tracks.csv", index=False)
    pd.DataFrame(split).to_csv(folder / "split.csv", index=False)


def run_stage(folder: Path, out: Path, workers: int) -> dict:
    """Run build_store in a child process; returns its wall/CPU time and peak RSS."""
    code = (
        "import json, resource, sys, time\n"
        "import h5py, scipy.fft, soundfile, soxr, tqdm, threadpoolctl  # warm imports, like the naive warm-up\n"
        "from mgr.extract import load_inputs\n"
        "from mgr.params import AudioParams, SpectrogramParams\n"
        "from mgr.spectrogram import build_store\n"
        "def cpu():\n"
        "    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime\n"
        f"tracks = load_inputs({str(folder / 'tracks.csv')!r}, {str(folder / 'split.csv')!r})\n"
        "t, c = time.perf_counter(), cpu()\n"
        f"rep = build_store(tracks, AudioParams(), SpectrogramParams(), {str(out)!r}, workers={workers}, progress=False)\n"
        "sec, csec = time.perf_counter() - t, cpu() - c\n"
        "print(json.dumps({'seconds': sec, 'cpu_seconds': csec, 'n_tracks': rep['n_tracks'],\n"
        "  'rss_main_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,\n"
        "  'rss_worker_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_naive(files: list[Path], scratch: Path) -> tuple[float, float]:
    import librosa

    scratch.mkdir(parents=True, exist_ok=True)
    librosa.feature.melspectrogram(y=np.zeros(SR, np.float32), sr=SR)  # warm-up (imports, JIT)
    t, c = time.perf_counter(), time.process_time()
    for f in files:
        y, sr = librosa.load(f, sr=SR)
        S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
        np.save(scratch / (f.stem + ".npy"), librosa.power_to_db(S, ref=1.0))
    return time.perf_counter() - t, time.process_time() - c


def run_floor(files: list[Path]) -> tuple[float, float]:
    import soundfile as sf

    t, c = time.perf_counter(), time.process_time()
    for f in files:
        y, _ = sf.read(f, dtype="float32")
        frames = np.lib.stride_tricks.sliding_window_view(y, 2048)[::512]
        np.fft.rfft(frames, axis=1)
    return time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--rss-only", action="store_true", help="only run the stage (peak RSS on many clips)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="mgr-bench-") as tmp:
        folder = args.dir or Path(tmp) / "clips"
        if not (folder / "tracks.csv").exists():
            t = time.perf_counter()
            make_clips(folder, args.clips, args.seconds)
            print(f"generated {args.clips} x {args.seconds:g} s FLAC clips in {time.perf_counter() - t:.1f} s")
        files = sorted(folder.glob("*.flac"))
        n = len(files)
        stage = run_stage(folder, Path(tmp) / "spec.h5", args.workers)
        res = {"clips": n, "seconds_per_clip": args.seconds, "workers": args.workers, "cpus": os.cpu_count(),
               "stage_clips_per_s": n / stage["seconds"], "stage_peak_rss_main_mb": round(stage["rss_main_mb"], 1),
               "stage_peak_rss_worker_mb": round(stage["rss_worker_mb"], 1)}
        if not args.rss_only:
            naive, naive_cpu = run_naive(files, Path(tmp) / "naive")
            floor, floor_cpu = run_floor(files)
            res |= {"naive_clips_per_s": n / naive, "floor_clips_per_s": n / floor,
                    "stage_over_naive": naive / stage["seconds"], "stage_over_floor": floor / stage["seconds"],
                    # CPU time is robust to other load on the machine; an idle machine with >= workers
                    # cores runs the stage in about cpu_seconds / workers of wall time
                    "stage_cpu_s": stage["cpu_seconds"], "naive_cpu_s": naive_cpu, "floor_cpu_s": floor_cpu,
                    "cpu_naive_over_stage": naive_cpu / stage["cpu_seconds"],
                    "cpu_floor_over_stage": floor_cpu / stage["cpu_seconds"]}
        res["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        for k, v in res.items():
            print(f"{k:>26}: {v:.2f}" if isinstance(v, float) else f"{k:>26}: {v}")


if __name__ == "__main__":
    main()
