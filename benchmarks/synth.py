"""Benchmark the synthetic dataset generator.

Measures
1. rendering speed on one core: seconds of audio rendered per CPU second ("x real time per
   core"), per genre and overall (plan + render, no file writing);
2. ``generate`` end to end (render + FLAC/WAV encoding + parallel workers): wall-clock x real time;
3. Karplus-Strong: the block-vectorised string vs the per-sample Python loop on the same
   excitations (same output, checked), as a speed ratio.

Usage::

    uv run python benchmarks/synth.py                      # defaults: 2 clips/genre x 8 s
    uv run python benchmarks/synth.py --clips 4 --duration 30 --workers 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def bench_render(clips: int, duration: float, sr: int, seed: int) -> dict:
    from mgr.data.sources import synthetic as S

    S.render_clip(seed, "rock", 10_000, duration_s=1.0, sr=sr)  # warm-up: imports, wavetables
    per_genre = {}
    tot_cpu = 0.0
    for g in S.GENRES:
        c0 = time.process_time()
        for i in range(clips):
            S.render_clip(seed, g, i, duration_s=duration, sr=sr)
        cpu = time.process_time() - c0
        tot_cpu += cpu
        per_genre[g] = clips * duration / cpu
    return {
        "clips": clips * len(S.GENRES),
        "duration_s": duration,
        "cpu_s": tot_cpu,
        "x_realtime_per_core": clips * len(S.GENRES) * duration / tot_cpu,
        "x_realtime_per_core_by_genre": per_genre,
    }


def bench_generate(clips: int, duration: float, sr: int, seed: int, workers: int, fmt: str) -> dict:
    from mgr.data.sources import synthetic as S
    from mgr.io import n_workers
    from mgr.params import SyntheticParams

    sp = SyntheticParams(clips_per_genre=clips, duration_s=duration, sample_rate=sr, format=fmt)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        df = S.generate(Path(d), sp, seed=seed, inject_corrupt=0, workers=workers)
        wall = time.perf_counter() - t0
    n = n_workers(workers)
    audio_s = len(df) * duration
    return {"workers": n, "format": fmt, "clips": len(df), "wall_s": wall, "x_realtime": audio_s / wall,
            "x_realtime_per_worker": audio_s / wall / n}


def bench_karplus_strong(sr: int, seed: int) -> dict:
    from mgr.synth import dsp

    rng = np.random.default_rng(seed)
    notes = [(82.4, 1.5), (110.0, 1.0), (220.0, 1.0), (440.0, 0.5), (880.0, 0.5)]  # (Hz, s)
    excs = []
    for f, dur in notes:
        period = max(2, int(round(sr / f)))
        excs.append((dsp._ks_excitation(period, rng, 0.6), int(dur * sr), dsp.ks_gain(period, sr, 1.5)))
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        fast = [dsp._ks_blocks(e, n, g) for e, n, g in excs]
    t_fast = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    slow = [dsp.karplus_strong_naive(e, n, g) for e, n, g in excs]
    t_slow = time.perf_counter() - t0
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(fast, slow))
    samples = sum(n for _, n, _ in excs)
    return {"notes": len(notes), "samples": samples, "vectorised_s": t_fast, "naive_s": t_slow,
            "speedup": t_slow / t_fast, "max_abs_diff": err,
            "vectorised_x_realtime": samples / sr / t_fast, "naive_x_realtime": samples / sr / t_slow}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=2, help="clips per genre")
    ap.add_argument("--duration", type=float, default=8.0, help="clip length (s)")
    ap.add_argument("--sr", type=int, default=22050)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0, help="generate(): worker processes (0 = all CPUs)")
    ap.add_argument("--format", default="flac", choices=["wav", "flac", "ogg"])
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args(argv)

    res = {
        "render": bench_render(a.clips, a.duration, a.sr, a.seed),
        "generate": bench_generate(a.clips, a.duration, a.sr, a.seed, a.workers, a.format),
        "karplus_strong": bench_karplus_strong(a.sr, a.seed),
    }
    r, g, k = res["render"], res["generate"], res["karplus_strong"]
    print(f"render   : {r['clips']} clips x {r['duration_s']:g} s in {r['cpu_s']:.2f} CPU s "
          f"-> {r['x_realtime_per_core']:.1f}x real time per core")
    print("           by genre: " + ", ".join(f"{n} {v:.0f}x" for n, v in r["x_realtime_per_core_by_genre"].items()))
    print(f"generate : {g['clips']} {g['format']} files, {g['workers']} worker(s), {g['wall_s']:.2f} s wall "
          f"-> {g['x_realtime']:.1f}x real time ({g['x_realtime_per_worker']:.1f}x per worker)")
    print(f"karplus  : {k['samples']} samples, vectorised {k['vectorised_s'] * 1e3:.2f} ms vs per-sample loop "
          f"{k['naive_s'] * 1e3:.1f} ms -> {k['speedup']:.0f}x faster (max |diff| {k['max_abs_diff']:.1e})")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
