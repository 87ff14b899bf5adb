"""One long file: wall time and peak memory of `mgr predict LONG.wav` per model.

Run: ``uv run python benchmarks/predict_long.py [--minutes 60] [--models models] [--model svm --model cnn2d ...]``

Writes a ``--minutes`` long 22.05 kHz mono 16-bit WAV (a tone pattern that changes every few
seconds over a noise floor, with clicks at ~120 BPM, built block by block) to a temporary
directory, then runs ``python -m mgr.cli predict FILE --model DIR -f json`` once per model as a
fresh process under ``/usr/bin/time`` and prints wall seconds, seconds per minute of audio and
peak RSS (MB), plus the answer. The code measured is whatever ``mgr`` the interpreter imports
(set ``PYTHONPATH`` to compare two checkouts on the same file: ``--keep FILE`` reuses it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
SR = 22050


def make_long(path: Path, minutes: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n_total = int(minutes * 60 * SR)
    block = 10 * SR
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for start in range(0, n_total, block):
            m = min(block, n_total - start)
            t = (start + np.arange(m)) / SR
            f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
            y = 0.2 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 1.5 * f0 * t)
            clicks = (np.mod(t, 0.5) < 0.01) * rng.standard_normal(m) * 0.3
            y = y + clicks + 0.02 * rng.standard_normal(m)
            f.write(np.clip(y, -1, 1).astype(np.float32))
    return path


def run(model_dir: Path, clip: Path) -> dict:
    cmd = ["/usr/bin/time", "-f", "TIME %e %M", sys.executable, "-m", "mgr.cli", "predict", str(clip),
           "--model", str(model_dir), "-f", "json", "-q"]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    line = next(ln for ln in p.stderr.splitlines() if ln.startswith("TIME "))
    wall, rss_kb = float(line.split()[1]), int(line.split()[2])
    out = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {"error": p.stderr[-500:]}
    return {"wall_s": wall, "peak_rss_mb": round(rss_kb / 1024, 1), "rc": p.returncode,
            "genre": out.get("genre"), "top_k": out.get("top_k"), "tempo_bpm": out.get("tempo_bpm")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--model", action="append", default=None, help="model name(s) under --models")
    ap.add_argument("--keep", type=Path, default=None, help="write/reuse the long file here")
    a = ap.parse_args()
    tmp = None if a.keep else Path(tempfile.mkdtemp(prefix="mgr-long-"))  # (removed at the end)
    clip = a.keep or tmp / "long.wav"
    try:
        if not clip.is_file():
            make_long(clip, a.minutes)
        minutes = sf.info(str(clip)).duration / 60
        results = {}
        for name in a.model or ["svm", "cnn2d", "musicnn_transfer"]:
            r = run(a.models / name, clip)
            r["s_per_audio_minute"] = round(r["wall_s"] / minutes, 3)
            results[name] = r
            print(f"{name:18s} {r['wall_s']:8.1f} s  {r['s_per_audio_minute']:6.3f} s/min  {r['peak_rss_mb']:8.1f} MB  "
                  f"rc={r['rc']} genre={r['genre']}", flush=True)
        print(json.dumps({"clip": str(clip), "minutes": round(minutes, 2), "load_avg_1min": round(os.getloadavg()[0], 2),
                          "results": results}))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
