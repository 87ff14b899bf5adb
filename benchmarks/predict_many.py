"""Many short files: `mgr predict DIR` in-process (--jobs 1) against worker processes (--jobs N).

Run: ``uv run python benchmarks/predict_many.py [--files 300] [--seconds 3] [--model DIR]``

Writes ``--files`` WAV clips (22.05 kHz, ``--seconds`` each) to a temporary directory and times
``mgr predict DIR -f json -q`` as a fresh process with ``--jobs 1`` and with ``--jobs 0`` (one
worker per CPU), best of ``--repeat``; checks both give the same answers (numbers within 1e-5: one onnxruntime thread per worker
against several in-process can move the last printed digit). The model defaults to
the small deep fixture of the tests (``tests/data/predict/tiny_cnn``); pass ``--model`` for a
trained one (e.g. ``models/svm``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--model", default=str(ROOT / "tests" / "data" / "predict" / "tiny_cnn"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mgr-many-"))
    try:
        rng = np.random.default_rng(0)
        sr = 22050
        t = np.arange(int(a.seconds * sr)) / sr
        for i in range(a.files):
            y = 0.3 * np.sin(2 * np.pi * (110 + 5 * i) * t) * (0.5 + 0.5 * (np.mod(t, 0.5) < 0.05))
            sf.write(tmp / f"clip{i:04d}.wav", (y + 0.01 * rng.standard_normal(t.size)).astype(np.float32), sr)
        mgr = str(Path(sys.executable).parent / "mgr")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        out: dict[str, tuple[float, str]] = {}
        for jobs in ("1", "0"):
            best, text = float("inf"), ""
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                r = subprocess.run([mgr, "predict", str(tmp), "-m", a.model, "-f", "json", "-q", "--jobs", jobs],
                                   capture_output=True, text=True, env=env)
                best = min(best, time.perf_counter() - t0)
                text = r.stdout
                assert r.returncode == 0, r.stderr[-2000:]
            out[jobs] = (best, text)
        same, diff = _compare(out["1"][1], out["0"][1])
        print(f"{a.files} files x {a.seconds:g} s, model {Path(a.model).name}, {os.cpu_count()} CPUs")
        print(f"--jobs 1: {out['1'][0]:.2f} s   --jobs 0 (one worker per CPU): {out['0'][0]:.2f} s   "
              f"speed-up {out['1'][0] / out['0'][0]:.2f}x   same answers: {same} (largest number difference {diff:.1e})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # (the clips never outlive the run)


def _compare(a: str, b: str) -> tuple[bool, float]:
    """Whether two runs' JSON lines give the same answers (same files in the same order, the same
    labels and strings; numbers within 1e-5: the workers run onnxruntime on one thread, the
    in-process run on several, so the last printed digit can differ) and the largest difference."""
    import json

    worst = 0.0

    def same(x, y) -> bool:
        nonlocal worst
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            worst = max(worst, abs(x - y))
            return abs(x - y) <= 1e-5
        if isinstance(x, dict):
            return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, list):
            return isinstance(y, list) and len(x) == len(y) and all(same(u, v) for u, v in zip(x, y))
        return x == y

    la, lb = a.strip().splitlines(), b.strip().splitlines()
    ok = len(la) == len(lb) and all(same(json.loads(x), json.loads(y)) for x, y in zip(la, lb))
    return ok, worst


if __name__ == "__main__":
    main()
