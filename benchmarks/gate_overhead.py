"""What the no-music gate (and the out-of-distribution check riding on it) adds to `mgr predict`.

Run: ``uv run python benchmarks/gate_overhead.py [--models models] [--repeat 7] [--clip FILE]``

For each model (``svm``, ``cnn2d`` and the built-in ``musicnn-msd`` tagger when present), in one
run and on the same 30 s clip (synthetic music, 22.05 kHz WAV, unless ``--clip``), the same loaded
artifact predicts the file with the gate on (``gate=True``, what ``mgr predict`` does) and off
(``gate=False``, ``--no-music-gate``), alternately, ``--repeat`` times after one untimed warm-up
each; the ratio of the median process-CPU times (steadier than wall time on a shared machine;
wall time printed too) is the gate's cost per file, the strict measure (what a library run pays
per file once the model is loaded). Then, as a user runs it, the whole ``mgr predict CLIP --model
NAME`` command (a fresh process: start-up, model load, prediction) with and without
``--no-music-gate``, alternately, ``--cli-repeat`` times: the ratio of the median wall times.
Goal (issue 24): gated / ungated <= 1.10. ``--blas`` also times the command (gated) with
OpenBLAS's own default of one thread per CPU (``OPENBLAS_NUM_THREADS`` = the CPU count) against
predict's default of one, wall and CPU time. Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the mgr predict command runs (before NumPy loads)

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402


def _time(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def _commands(clip: Path, model_dir: Path, repeat: int, modes: dict[str, tuple[list[str], dict[str, str]]]) -> dict:
    """Median wall and CPU (the child's) time of the ``mgr predict`` command per mode (extra
    arguments, extra environment), the modes alternating, after one untimed run each (the OS
    file cache)."""
    base = [sys.executable, "-m", "mgr.cli", "predict", str(clip), "--model", str(model_dir), "--format", "json", "--quiet"]
    t: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    for i in range(repeat + 1):
        for mode, (extra, env) in modes.items():
            c0, w = os.times(), time.perf_counter()
            r = subprocess.run(base + extra, capture_output=True, text=True, env={**os.environ, **env})
            wall, c1 = time.perf_counter() - w, os.times()
            if r.returncode:
                raise SystemExit(f"mgr predict failed ({mode}): {(r.stderr.strip().splitlines() or [''])[-1]}")
            if i:
                t[mode].append((wall, c1.children_user + c1.children_system - c0.children_user - c0.children_system))
    return {m: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for m, v in t.items()}


def _cli(clip: Path, model_dir: Path, repeat: int) -> dict:
    """The ``mgr predict`` command gated and with ``--no-music-gate``: median wall times."""
    med = _commands(clip, model_dir, repeat, {"off": (["--no-music-gate"], {}), "on": ([], {})})
    on, off = med["on"][0], med["off"][0]
    return {"cli_on_s": round(on, 3), "cli_off_s": round(off, 3), "cli_ratio": round(on / off, 4)}


def _cli_blas(clip: Path, model_dir: Path, repeat: int) -> dict:
    """The ``mgr predict`` command (gated) with one OpenBLAS thread per CPU against one thread."""
    med = _commands(clip, model_dir, repeat, {"per_cpu": ([], {"OPENBLAS_NUM_THREADS": str(os.cpu_count() or 1)}),
                                              "one": ([], {"OPENBLAS_NUM_THREADS": "1"})})
    return {"blas_wall_s": {k: round(v[0], 3) for k, v in med.items()},
            "blas_cpu_s": {k: round(v[1], 3) for k, v in med.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="models")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--clip", help="audio file to predict (default: a 30 s synthetic music clip)")
    ap.add_argument("--names", default="svm,cnn2d,musicnn-msd")
    ap.add_argument("--cli-repeat", type=int, default=5, help="runs of the mgr predict command each way (0: skip)")
    ap.add_argument("--blas", action="store_true", help="also time mgr predict with one OpenBLAS thread per CPU vs one")
    args = ap.parse_args()

    from mgr.inference.catalog import resolve_model
    from mgr.inference.nonmusic import music
    from mgr.inference.predictors import load_predictor

    with tempfile.TemporaryDirectory(prefix="mgr-gate-bench-") as tmp:
        clip = Path(args.clip) if args.clip else Path(tmp) / "clip30.wav"
        if not args.clip:
            sf.write(clip, music(30.0, 22050, -16.0, np.random.default_rng(0), "rock"), 22050)
        rows = []
        for name in args.names.split(","):
            try:
                model_dir = resolve_model(name, Path(args.models).parent if Path(args.models).name == "models" else ".")
            except Exception as e:  # noqa: BLE001 - a missing model is skipped, said so
                print(f"skip {name}: {e}", file=sys.stderr)
                continue
            on, off = load_predictor(model_dir, gate=True), load_predictor(model_dir, gate=False)
            on.predict_file(clip), off.predict_file(clip)  # warm-up (onnxruntime sessions, caches)
            t_on, t_off = [], []
            for _ in range(args.repeat):
                t_off.append(_time(lambda: off.predict_file(clip)))
                t_on.append(_time(lambda: on.predict_file(clip)))
            c_on, c_off = statistics.median(t[0] for t in t_on), statistics.median(t[0] for t in t_off)
            w_on, w_off = statistics.median(t[1] for t in t_on), statistics.median(t[1] for t in t_off)
            rows.append({"model": name, "cpu_on_s": round(c_on, 4), "cpu_off_s": round(c_off, 4),
                         "cpu_ratio": round(c_on / c_off, 4), "wall_on_s": round(w_on, 4),
                         "wall_off_s": round(w_off, 4), "wall_ratio": round(w_on / w_off, 4),
                         "music": on.predict_file(clip).music})
            if args.cli_repeat > 0:
                rows[-1].update(_cli(clip, model_dir, args.cli_repeat))
            if args.blas and args.cli_repeat > 0:
                rows[-1].update(_cli_blas(clip, model_dir, args.cli_repeat))
        print(f"{'model':12s} {'cpu on':>8s} {'cpu off':>8s} {'ratio':>6s} {'wall on':>8s} {'wall off':>8s} {'ratio':>6s}")
        for r in rows:
            print(f"{r['model']:12s} {r['cpu_on_s']:8.3f} {r['cpu_off_s']:8.3f} {r['cpu_ratio']:6.3f} "
                  f"{r['wall_on_s']:8.3f} {r['wall_off_s']:8.3f} {r['wall_ratio']:6.3f}")
        if any("cli_ratio" in r for r in rows):
            print(f"\n{'mgr predict':12s} {'wall on':>8s} {'wall off':>8s} {'ratio':>6s}")
            for r in rows:
                if "cli_ratio" in r:
                    print(f"{r['model']:12s} {r['cli_on_s']:8.3f} {r['cli_off_s']:8.3f} {r['cli_ratio']:6.3f}")
        for r in rows:
            if "blas_wall_s" in r:
                w, c = r["blas_wall_s"], r["blas_cpu_s"]
                print(f"{r['model']:12s} OpenBLAS threads per CPU / one: wall {w['per_cpu']:.3f} / {w['one']:.3f} s, "
                      f"CPU {c['per_cpu']:.3f} / {c['one']:.3f} s")
        print(json.dumps({"clip_s": 30.0 if not args.clip else None, "repeat": args.repeat, "results": rows,
                          "goal": "cli_ratio (the mgr predict command) <= 1.10"}))


if __name__ == "__main__":
    main()
