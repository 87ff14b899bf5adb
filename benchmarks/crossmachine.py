"""The cost of machine-independent results: each step as the project runs it now against the
naive machine-dependent version of the same step, on the same inputs, in one run (ratios).

Run: uv run python benchmarks/crossmachine.py [--seconds 30] [--clips 8] [--epochs 3] [--repeats 3]

- ``frontend``: the log-mel front end (``mgr.dsp.frontend.compute_spectrogram``: portable log,
  fixed-order mel sums, ``re*re + im*im``) against the same front end with NumPy's dispatched
  ``np.abs(X)**2``, BLAS ``@`` and ``np.log10`` (what it was before), per clip of ``--seconds``;
- ``gtzan57``: the handcrafted features per clip (no naive twin kept: reported as time per clip);
- ``train``: per model (``cnn2d`` at width 0.25 on 3 s windows, 512 windows; ``musicnn_transfer``
  on 128 of its patches, backbone trained too) ``--epochs`` epochs in a fresh process, as training
  runs now (``mgr.tfsetup``: oneDNN capped at AVX2, 2 intra-op threads, op determinism) against
  TensorFlow's defaults (oneDNN at the CPU's best instruction set, one thread per core, op
  determinism), alternating the two ``--repeats`` times and taking each one's median;
- ``stage``: the classical training stage as ``dvc repro`` runs it (``stages/train_ml.py`` for
  each of ``--stage-models`` on the project's ``data/features.parquet``, written to a temporary
  directory), re-executed under the machine pins of ``stages/_common.py`` (glibc's libm without
  its FMA/AVX2 variants, NumPy's baseline loops) against the same stage with
  ``MGR_NO_MACHINE_PIN=1``, alternating ``--repeats`` times, medians (skipped without the table:
  run ``dvc repro features`` first).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

_TRAIN = r"""
import os, sys, time, json
mode = sys.argv[1]
sys.path.insert(0, sys.argv[2])
if mode == "portable":
    from mgr import tfsetup
    tfsetup.configure()
else:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
import numpy as np, keras
from mgr.models import deep
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
from mgr.params import DlModelParams
name = sys.argv[4]
shape, n, width = ((128, 130, 1), 512, 0.25) if name == "cnn2d" else ((96, 187, 1), 128, 1.0)
X = rng.standard_normal((n, *shape)).astype("float32")
y = keras.utils.to_categorical(rng.integers(0, 10, n), 10)
m = deep.build(name, shape, 10, params=DlModelParams(width=width, dropout=0.3))
deep.compile_model(m, 0.003, ["genre"])
m.fit(X[:64], {"genre": y[:64]}, epochs=1, batch_size=32, verbose=0)  # trace/compile outside the timing
t = time.perf_counter()
m.fit(X, {"genre": y}, epochs=int(sys.argv[3]), batch_size=32, verbose=0)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def _naive_rows(b, frontend, out=None):
    """The front end's kernel with NumPy's dispatched operations (the machine-dependent baseline)."""
    import numpy as np
    import scipy.fft

    from mgr.dsp.frontend import _mel_groups

    spec = scipy.fft.rfft(b, axis=1, workers=1)
    power = np.abs(spec) ** 2
    dst = np.empty((b.shape[0], int(frontend["n_mels"])), dtype=np.float32) if out is None else out
    for m0, m1, lo, hi, w in _mel_groups(int(frontend["sr"]), int(frontend["n_fft"]), int(frontend["n_mels"]),
                                         float(frontend["fmin"]), float(frontend["fmax"])):
        np.matmul(power[:, lo:hi], w, out=dst[:, m0:m1]) if hi > lo else dst[:, m0:m1].fill(0.0)
    np.maximum(dst, np.float32(frontend["amin"]), out=dst)
    np.log10(dst, out=dst)
    dst *= np.float32(10.0)
    np.maximum(dst, np.float32(frontend["floor_db"]), out=dst)
    return dst


def bench_frontend(seconds: float, clips: int) -> dict:
    import numpy as np

    from mgr.dsp import frontend as fe_mod
    from mgr.dsp.kernels import gtzan57
    from mgr.params import load_params

    p = load_params(ROOT / "params.yaml")
    fe = fe_mod.frontend_config(p.audio, p.spectrogram)
    rng = np.random.default_rng(0)
    ys = [(0.3 * rng.standard_normal(int(seconds * fe["sr"]))).astype(np.float32) for _ in range(clips)]
    out = {}
    for name, kernel in (("naive", _naive_rows), ("portable", fe_mod.windowed_rows)):
        orig = fe_mod.windowed_rows
        fe_mod.windowed_rows = kernel
        try:
            fe_mod.compute_spectrogram(ys[0], fe["sr"], fe)  # warm caches
            times = []
            for _ in range(3):
                t = time.perf_counter()
                for y in ys:
                    fe_mod.compute_spectrogram(y, fe["sr"], fe)
                times.append((time.perf_counter() - t) / clips)
            out[name] = min(times)
        finally:
            fe_mod.windowed_rows = orig
    t = time.perf_counter()
    for y in ys[:2]:
        gtzan57(y, fe["sr"])
    return {"frontend_ms_per_clip": {k: round(1000 * v, 2) for k, v in out.items()},
            "frontend_ratio": round(out["portable"] / out["naive"], 2),
            "gtzan57_ms_per_clip": round(1000 * (time.perf_counter() - t) / 2, 1)}


def bench_train(epochs: int, repeats: int, model: str = "cnn2d") -> dict:
    times: dict[str, list[float]] = {"default": [], "portable": []}
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")}
    for _ in range(repeats):
        for mode in ("default", "portable"):
            r = subprocess.run([sys.executable, "-c", _TRAIN, mode, str(ROOT / "src"), str(epochs), model],
                               capture_output=True, text=True, env=env)
            if r.returncode:
                raise SystemExit(f"training run ({mode}) failed: {r.stderr.strip().splitlines()[-1:]}")
            times[mode].append(json.loads(r.stdout.strip().splitlines()[-1])["seconds"])
    med = {k: statistics.median(v) for k, v in times.items()}
    return {f"train_{model}_seconds": {k: round(v, 2) for k, v in med.items()},
            f"train_{model}_ratio": round(med["portable"] / med["default"], 2)}


def bench_stage(models: list[str], repeats: int) -> dict:
    import tempfile

    table = ROOT / "data" / "features.parquet"
    if not table.is_file():
        return {"stage": f"skipped: no {table.relative_to(ROOT)} (dvc repro features)"}
    out: dict = {}
    for name in models:
        times: dict[str, list[float]] = {"unpinned": [], "pinned": []}
        for _ in range(repeats):
            for mode in ("unpinned", "pinned"):
                env = dict(os.environ)
                env.pop("MGR_NO_MACHINE_PIN", None)
                if mode == "unpinned":
                    env["MGR_NO_MACHINE_PIN"] = "1"
                with tempfile.TemporaryDirectory() as tmp:
                    t = time.perf_counter()
                    r = subprocess.run([sys.executable, str(ROOT / "stages" / "train_ml.py"), name, "--features", str(table),
                                        "--models-dir", tmp, "--metrics-dir", tmp], capture_output=True, text=True, env=env)
                    times[mode].append(time.perf_counter() - t)
                if r.returncode:
                    raise SystemExit(f"train_ml {name} ({mode}) failed: {r.stderr.strip().splitlines()[-1:]}")
        med = {k: statistics.median(v) for k, v in times.items()}
        out[f"stage_train_ml_{name}_seconds"] = {k: round(v, 2) for k, v in med.items()}
        out[f"stage_train_ml_{name}_ratio"] = round(med["pinned"] / med["unpinned"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--stage-models", nargs="*", default=["svm", "logreg-musicnn_msd"],
                    help="classical models whose training stage is timed pinned vs unpinned ([] skips)")
    ap.add_argument("--models", nargs="*", default=["cnn2d", "musicnn_transfer"],
                    help="deep models to train (cnn2d at width 0.25 on 3 s windows; musicnn_transfer on its 187-frame patches)")
    args = ap.parse_args()
    res = {"cpus": len(os.sched_getaffinity(0)), **bench_frontend(args.seconds, args.clips)}
    if not args.skip_train:
        for model in args.models:
            res.update(bench_train(args.epochs, args.repeats, model))
    res.update(bench_stage(args.stage_models, args.repeats) if args.stage_models else {})
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
