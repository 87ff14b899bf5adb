"""musicnn embedding extraction time per 30 s clip on one core, and peak memory.

Run: ``uv run python benchmarks/musicnn.py [--backbone MSD_musicnn] [--clips 5] [--backends onnx,keras]``

For each backend, in a fresh process pinned to one thread (TensorFlow intra/inter-op threads = 1;
onnxruntime ``intra_op_num_threads = 1``), on synthetic 30 s, 16 kHz clips (a few harmonic
tones, a pulse and noise, different per clip):

* **frontend**: :func:`mgr.pretrained.musicnn.logmel` + :func:`patches` (NumPy; 10 patches);
* **network**: the 10 patches through the model (``penultimate``);
* **total**: :func:`track_embedding` end to end (front end + network + mean/max pooling);
* **peak RSS** of that process (``VmHWM``) after loading the model and embedding the clips.

The ONNX file comes from :func:`save_backbone` (``mgr.models.export.export_keras``) in a
temporary directory; when that exporter is unavailable only Keras is measured. One untimed
warm-up clip; the table shows the median over ``--clips`` clips. Goal: total <= 0.5 s per clip.
Prints a table and a JSON line with the numbers.
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

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 0.5


def _clip(i: int, seconds: float = 30.0, sr: int = 16000):
    import numpy as np

    rng = np.random.default_rng(i)
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for f in rng.uniform(80, 2000, 4):
        y += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * rng.uniform(0.2, 3) * t))
    beat = (np.mod(t, 60.0 / rng.uniform(70, 160)) < 0.03).astype(float)
    y += 0.5 * beat * rng.standard_normal(t.size) + 0.02 * rng.standard_normal(t.size)
    return (y / np.max(np.abs(y))).astype(np.float32)


def _peak_rss_mib() -> float:
    """This process's peak RSS: ``VmHWM`` (per address space, so unlike ``ru_maxrss`` it does
    not inherit the parent's peak across fork + exec); ``ru_maxrss`` where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker(backend: str, backbone: str, onnx_path: str | None, n_clips: int) -> dict:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["OMP_NUM_THREADS"] = "1"
    import numpy as np

    from mgr.pretrained import embedding as emb
    from mgr.pretrained import musicnn as m

    t0 = time.perf_counter()
    if backend == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        run = emb.keras_runner(m.build_musicnn(backbone, outputs=("penultimate",)))
    else:
        run = emb.onnx_runner(onnx_path, threads=1)
    load_s = time.perf_counter() - t0
    clips = [_clip(i) for i in range(n_clips + 1)]
    emb.track_embedding(run, clips[0])  # warm-up
    fe, net, total = [], [], []
    for y in clips[1:]:
        c0 = time.perf_counter()
        P = m.patches(m.logmel(y))
        c1 = time.perf_counter()
        emb.embed_patches(run, P)
        c2 = time.perf_counter()
        e = emb.track_embedding(run, y)
        c3 = time.perf_counter()
        assert e.shape == (400,) and np.isfinite(e).all()
        fe.append(c1 - c0)
        net.append(c2 - c1)
        total.append(c3 - c2)
    return {
        "backend": backend,
        "load_s": load_s,
        "patches": int(len(P)),
        "frontend_s": statistics.median(fe),
        "network_s": statistics.median(net),
        "total_s": statistics.median(total),
        "peak_rss_mib": _peak_rss_mib(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="MSD_musicnn")
    ap.add_argument("--clips", type=int, default=5)
    ap.add_argument("--backends", default="onnx,keras")
    ap.add_argument("--_worker", nargs=2, metavar=("BACKEND", "ONNX"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._worker:
        backend, onnx_path = a._worker
        print(json.dumps(_worker(backend, a.backbone, onnx_path if onnx_path != "-" else None, a.clips)))
        return 0

    from mgr.pretrained import builtin

    backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = "-"
        if "onnx" in backends:
            try:
                d = builtin.save_backbone(a.backbone, Path(tmp) / "bb", onnx=True)
                onnx_path = str(d / "model.onnx")
            except ImportError as e:
                print(f"onnx skipped: {e}", file=sys.stderr)
                backends.remove("onnx")
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for b in backends:
            cmd = [sys.executable, __file__, "--backbone", a.backbone, "--clips", str(a.clips), "--_worker", b, onnx_path]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"musicnn embedding ({a.backbone}), one 30 s clip, 1 thread, median of {a.clips}; goal total <= {GOAL_S} s")
    print(f"{'backend':8} {'load s':>7} {'patches':>7} {'frontend s':>10} {'network s':>9} {'total s':>8} {'peak RSS MiB':>12}")
    for r in rows:
        print(f"{r['backend']:8} {r['load_s']:7.2f} {r['patches']:7d} {r['frontend_s']:10.4f} {r['network_s']:9.3f} "
              f"{r['total_s']:8.3f} {r['peak_rss_mib']:12.0f}")
    print(json.dumps({"backbone": a.backbone, "goal_s": GOAL_S, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
