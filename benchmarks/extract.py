"""The whole spectrogram stage vs a naive librosa loop, and the per-core kernel vs librosa's.

Usage (from the project root)::

    uv run python benchmarks/extract.py                       # 100 x 30 s clips, 3 repeats
    uv run python benchmarks/extract.py --clips 200 --seconds 10 --repeat 1 --format flac
    uv run python benchmarks/extract.py --dir /tmp/mgr-bench  # keep (and reuse) the scratch project

It writes ``--clips`` deterministic synthetic clips (tones + noise + clicks, 22.05 kHz mono,
16-bit WAV like GTZAN's) into a tiny project folder (``params.yaml`` copied from this repo,
``data/raw/synthetic/tracks.csv``, ``data/split.csv``, a copy of ``stages/``), then measures on
the same files:

* **stage** (whole): ``python stages/spectrogram.py`` in that folder as a fresh process: every
  import, the header probe, the workers, the HDF5 store, its validation and the metrics file;
* **naive (cold)**: a fresh process running the usual tutorial loop, per file ``librosa.load`` +
  ``librosa.feature.melspectrogram`` + ``librosa.power_to_db`` + ``np.save`` (its imports included);
* **naive (warm)**: the same loop in this process after a warm-up (imports and numba JIT paid
  beforehand): the stricter baseline, and the one the headline ratio uses;
* **kernel** (per clip, one thread): ``mgr.dsp.frontend._frames_major`` (what each stage worker
  runs after decoding) vs ``librosa.power_to_db(librosa.feature.melspectrogram(...))`` on the
  same decoded signal, and the decoders (``mgr.audio.decode.load_audio`` vs ``librosa.load``).

Wall times are the best of ``--repeat`` runs (the machine may be shared); CPU seconds (user + sys,
children included) are printed besides: they are robust to other load, and an idle machine with
``workers`` free cores runs the stage in about ``cpu / workers`` of wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 22050
ROOT = Path(__file__).resolve().parent.parent


def make_project(proj: Path, n: int, seconds: float, fmt: str, workers: int, seed: int = 0) -> list[Path]:
    """A tiny project folder the real stage script can run in; returns the audio files."""
    import pandas as pd
    import soundfile as sf
    import yaml

    raw = proj / "data" / "raw" / "synthetic"
    raw.mkdir(parents=True, exist_ok=True)
    files = [raw / f"clip{i:05d}.{fmt}" for i in range(n)]
    if not (raw / "tracks.csv").exists():
        rng = np.random.default_rng(seed)
        t = np.arange(int(SR * seconds)) / SR
        rows, split = [], []
        for i, f in enumerate(files):
            f0, bpm = rng.uniform(80, 1000), rng.uniform(70, 160)
            y = 0.2 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 2.01 * f0 * t)
            y += 0.02 * rng.standard_normal(t.size)
            y += (np.mod(t, 60.0 / bpm) < 0.01) * rng.uniform(0.2, 0.5)
            sf.write(f, np.clip(y, -1, 1).astype(np.float32), SR, subtype="PCM_16")
            tid = f"c{i:05d}"
            rows.append({"track_id": tid, "path": f.name, "genre": f"g{i % 10}", "duration_s": seconds,
                         "sample_rate": SR, "channels": 1})
            split.append({"track_id": tid, "split": "train" if i % 10 < 7 else ("val" if i % 10 == 7 else "test")})
        pd.DataFrame(rows).to_csv(raw / "tracks.csv", index=False)
        pd.DataFrame(split).to_csv(proj / "data" / "split.csv", index=False)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["source"] = "synthetic"
    params["spectrogram"]["workers"] = workers
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the stage chdirs to its script's grandparent: a copy (not a link) of stages/ makes that `proj`
    shutil.rmtree(proj / "stages", ignore_errors=True)
    shutil.copytree(ROOT / "stages", proj / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    return files


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_process(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a fresh process; raises with its stderr if it fails."""
    c0, t0 = _children_cpu(), time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return wall, cpu


NAIVE = """
import sys, numpy as np, librosa
from pathlib import Path
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
for f in sys.argv[2:]:
    y, sr = librosa.load(f, sr=22050)
    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
    np.save(out / (Path(f).stem + ".npy"), librosa.power_to_db(S, ref=1.0))
"""


def naive_warm(files: list[Path], scratch: Path) -> tuple[float, float]:
    import librosa

    scratch.mkdir(parents=True, exist_ok=True)
    y, _ = librosa.load(files[0], sr=SR)  # warm-up: imports, numba JIT, caches
    librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR), ref=1.0)
    t, c = time.perf_counter(), time.process_time()
    for f in files:
        y, sr = librosa.load(f, sr=SR)
        S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
        np.save(scratch / (f.stem + ".npy"), librosa.power_to_db(S, ref=1.0))
    return time.perf_counter() - t, time.process_time() - c


def kernel(files: list[Path], n: int) -> dict:
    """Median per-clip milliseconds, one thread: our decode and kernel vs librosa's."""
    import librosa
    from threadpoolctl import threadpool_limits

    from mgr.audio.decode import load_audio
    from mgr.dsp.frontend import _frames_major, frontend_config
    from mgr.params import AudioParams, SpectrogramParams

    fe = frontend_config(AudioParams(), SpectrogramParams())
    files = files[:n]
    out: dict[str, list[float]] = {k: [] for k in ("ours_decode", "librosa_decode", "ours_kernel", "librosa_kernel")}

    def lib(y):
        S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=fe["n_fft"], hop_length=fe["hop"], n_mels=fe["n_mels"])
        return librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=None)

    with threadpool_limits(1):
        y0 = load_audio(files[0], sr=SR)
        _frames_major(y0, fe), lib(y0), librosa.load(files[0], sr=SR)  # warm-up
        for f in files:
            for name, fn in (("ours_decode", lambda: load_audio(f, sr=SR)),
                             ("librosa_decode", lambda: librosa.load(f, sr=SR))):
                t = time.perf_counter()
                fn()
                out[name].append(time.perf_counter() - t)
            y = load_audio(f, sr=SR)
            for name, fn in (("ours_kernel", lambda: _frames_major(y, fe)), ("librosa_kernel", lambda: lib(y))):
                t = time.perf_counter()
                fn()
                out[name].append(time.perf_counter() - t)
    return {k: 1000 * float(np.median(v)) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--format", default="wav", choices=["wav", "flac"])
    ap.add_argument("--workers", type=int, default=0, help="spectrogram.workers of the stage (0 = all CPUs)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each whole-process measurement (best kept)")
    ap.add_argument("--kernel-clips", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=None, help="scratch project folder, kept (default: a temporary one)")
    ap.add_argument("--skip-naive", action="store_true", help="only the stage (and the kernel)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="mgr-bench-") as tmp:
        proj = (args.dir or Path(tmp) / "proj").resolve()
        t = time.perf_counter()
        files = make_project(proj, args.clips, args.seconds, args.format, args.workers)
        print(f"project {proj}: {len(files)} x {args.seconds:g} s {args.format} clips "
              f"({time.perf_counter() - t:.1f} s to prepare)", file=sys.stderr)
        py = sys.executable
        rows: list[tuple[str, float, float]] = []
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))

        def best(label: str, cmd: list[str]) -> tuple[float, float]:
            runs = [timed_process(cmd, proj, env) for _ in range(args.repeat)]
            w, c = min(runs)
            rows.append((label, w, c))
            print(f"  {label}: " + ", ".join(f"{a:.2f}s/{b:.2f}cpu" for a, b in runs), file=sys.stderr)
            return w, c

        stage, _ = best("stage (python stages/spectrogram.py)", [py, "stages/spectrogram.py"])
        if not args.skip_naive:
            best("naive librosa loop, cold process", [py, "-c", NAIVE, str(proj / "naive")] + [str(f) for f in files])
            runs = [naive_warm(files, proj / "naive") for _ in range(args.repeat)]
            warm = min(runs)
            rows.append(("naive librosa loop, warm (in-process)", *warm))
        k = kernel(files, args.kernel_clips)

    print(f"\n{len(files)} clips x {args.seconds:g} s, {args.format}, {os.cpu_count()} CPUs, "
          f"workers={args.workers or 'all'}, best of {args.repeat}")
    print(f"{'measurement':<42} {'wall s':>8} {'cpu s':>8} {'clips/s':>8} {'naive_warm/x':>13}")
    ref = rows[-1][1] if not args.skip_naive else None
    for label, w, c in rows:
        ratio = f"{ref / w:13.2f}" if ref else f"{'-':>13}"
        print(f"{label:<42} {w:8.2f} {c:8.2f} {len(files) / w:8.1f} {ratio}")
    if ref:
        print(f"\nwhole stage vs naive warm loop: {ref / stage:.2f}x   (>= 2x is the goal)")
    print(f"\nper clip, one thread, median of {min(args.kernel_clips, len(files))} clips (ms)")
    print(f"{'':<10} {'ours':>8} {'librosa':>8} {'librosa/ours':>13}")
    for what in ("decode", "kernel"):
        o, lb = k[f"ours_{what}"], k[f"librosa_{what}"]
        print(f"{what:<10} {o:8.2f} {lb:8.2f} {lb / o:13.2f}")


if __name__ == "__main__":
    main()
