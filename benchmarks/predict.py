"""Cold-start wall time of `mgr predict one_clip.wav` against `python -c "import tensorflow"` and
a naive script, for svm, cnn2d and the built-in musicnn-msd tagger.

Run: ``uv run python benchmarks/predict.py [--repeat 3] [--models models] [--clip FILE]``

For each model, in the same run and on the same clip (a 30 s, 22.05 kHz WAV unless --clip):

* **mgr**: ``mgr predict CLIP --model DIR --format json`` as a fresh process (the installed
  entry point), i.e. what a user waits for, imports included.
* **naive**: a script in the style of gtzan.keras's ``app.py``: ``import tensorflow, librosa``
  (and keras) at the top, load the model (``keras.models.load_model`` for deep; skops for
  classical), compute the features with librosa, predict, print. Same answer, no care for start-up.

* **import tensorflow**: ``python -c "import tensorflow"`` alone, the floor of any predict that
  runs the network on TensorFlow. ``mgr predict`` runs every model on onnxruntime
  (``model.onnx``), so goals are ratios to it: classical <= 0.4x, deep <= 0.8x.

``musicnn-msd`` is the built-in pretrained tagger (``mgr predict --model musicnn-msd``; built
once into the cache, untimed); its naive side loads the same network's ``model.keras`` with
Keras and computes musicnn's front end with librosa.

Models come from ``--models`` (``models/svm``, ``models/cnn2d`` after ``dvc repro``); when one is
missing the benchmark trains a stand-in into a temporary directory first (svm on gtzan57 features
of 30 synthetic clips; cnn2d untrained at the default front end, 3 s windows -- the cost of
running a network does not depend on its weights). Goals: classical <= 0.4x and deep <= 0.8x
the time of ``import tensorflow``. Prints a table and a JSON line with the numbers
(wall and CPU time: on a shared machine the CPU time is the steadier figure). Both sides get a
bytecode cache (see ``--no-bytecode-cache``) and one untimed warm-up run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NAIVE_DEEP = r"""
import sys, json
import tensorflow as tf
import librosa
import numpy as np
import keras
model_dir, clip = sys.argv[1], sys.argv[2]
card = json.load(open(model_dir + "/model.json"))
model = keras.models.load_model(model_dir + "/model.keras", safe_mode=True, compile=False)
fe = card["frontend"]
y, sr = librosa.load(clip, sr=fe["sr"])
S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=fe["n_fft"], hop_length=fe["hop"], n_mels=fe["n_mels"],
                                   fmin=fe["fmin"], fmax=fe["fmax"])
S = np.maximum(librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=None), fe["floor_db"])
L = card["window_frames"]; hop = L // 2
starts = list(range(0, max(1, S.shape[1] - L + 1), hop))
X = np.stack([S[:, s:s + L] for s in starts])[..., None]
out = model.predict(X, verbose=0)
p = np.asarray(out["genre"] if isinstance(out, dict) else out).mean(axis=0)
tempo = float(librosa.feature.tempo(y=y, sr=sr)[0])
print(json.dumps({"genre": card["labels"][int(p.argmax())], "tempo_bpm": tempo}))
"""

NAIVE_CLASSICAL = r"""
import sys, json
import tensorflow as tf
import librosa
import numpy as np
import skops.io as sio
from mgr.features.tables import extract_features
model_dir, clip = sys.argv[1], sys.argv[2]
card = json.load(open(model_dir + "/model.json"))
path = model_dir + "/" + card["model_file"]
model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
y, sr = librosa.load(clip, sr=22050)
f = extract_features(y, sr, card["feature_set"])
X = np.array([[f[c] for c in card["feature_columns"]]])
p = model.predict_proba(X)[0]
print(json.dumps({"genre": card["labels"][int(p.argmax())], "tempo_bpm": f.get("tempo")}))
"""


NAIVE_TAGGER = r"""
import sys, json
import tensorflow as tf
import librosa
import numpy as np
import keras
model_dir, clip = sys.argv[1], sys.argv[2]
card = json.load(open(model_dir + "/model.json"))
model = keras.models.load_model(model_dir + "/model.keras", safe_mode=True, compile=False)
y, sr = librosa.load(clip, sr=16000)
S = np.log10(1 + 10000 * librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=256, n_mels=96,
                                                        pad_mode="reflect")).T.astype(np.float32)
P = np.stack([S[s:s + 187] for s in range(0, max(1, len(S) - 186), 187)])
out = model.predict(P, verbose=0)
tags = np.asarray(out["taggram"]).mean(axis=0)
print(json.dumps({"genre": card["labels"][int(tags.argmax())]}))
"""


def make_clip(path: Path, seconds: float = 30.0, sr: int = 22050) -> Path:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    beat = (np.mod(t, 0.5) < 0.03).astype(np.float32)
    y = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.4 + beat) + 0.02 * rng.standard_normal(t.size)
    sf.write(path, y.astype(np.float32), sr)
    return path


def make_svm(out: Path) -> Path:
    """Train a small svm on gtzan57 features of synthetic clips (stand-in for models/svm)."""
    import numpy as np
    import pandas as pd

    from mgr.data.sources import synthetic
    from mgr.features.tables import extract_features
    from mgr.models import classical, classical_artifact
    from mgr.params import MlParams

    rows = []
    genres = list(synthetic.GENRES)[:5] if hasattr(synthetic, "GENRES") else ["a", "b", "c", "d", "e"]
    rng = np.random.default_rng(0)
    for gi, g in enumerate(genres):
        for i in range(6):
            sr = 22050
            t = np.arange(int(5 * sr)) / sr
            y = (0.2 * np.sin(2 * np.pi * (150 + 80 * gi + 5 * i) * t) * (1 + (np.mod(t, 60 / (80 + 15 * gi)) < 0.05))
                 + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
            f = extract_features(y, sr, "gtzan57")
            rows.append({"track_id": f"{g}{i}", "split": "val" if i == 0 else "train", "genre": g, **f})
    table = pd.DataFrame(rows)
    o = classical.train("svm", table, MlParams(), feature_set="gtzan57")
    classical_artifact.save(o.model, out / "svm", o.card, sample=o.sample)
    return out / "svm"


def make_cnn2d(out: Path) -> Path:
    """cnn2d at the default front end (22.05 kHz, 2048/512, 128 mels), 3 s windows, untrained."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests" / "data" / "predict"))
    import keras

    from mgr.features.store import frontend_config
    from mgr.models import deep
    from mgr.models.training import save_artifact
    from mgr.params import AudioParams, DlModelParams, SpectrogramParams

    keras.utils.set_random_seed(0)
    fe = frontend_config(AudioParams(), SpectrogramParams())
    frames = int(round(3.0 * fe["sr"] / fe["hop"]))
    labels = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
    model = deep.build("cnn2d", (fe["n_mels"], frames, 1), len(labels), params=DlModelParams(),
                       mean=np.full(fe["n_mels"], -40.0), std=np.full(fe["n_mels"], 12.0))
    card = {"name": "cnn2d", "kind": "deep", "labels": labels, "created": "benchmark stand-in", "frontend": fe,
            "audio": {"sample_rate": fe["sr"], "duration_s": None, "offset_s": 0.0, "pad": True},
            "window_s": 3.0, "window_frames": frames, "input_shape": [fe["n_mels"], frames, 1],
            "normalisation": {"mean": [-40.0] * fe["n_mels"], "std": [12.0] * fe["n_mels"]},
            "tempo_bins": None, "tag_vocab": [], "outputs": ["genre"], "model_file": "model.keras"}
    return save_artifact(model, card, out / "cnn2d")


def timed(cmd: list[str], repeat: int, env: dict) -> tuple[float, float, str]:
    """Median wall time and median CPU time (user + sys of the child) over ``repeat`` runs.

    CPU time is reported too because on a shared, overloaded machine wall time mostly measures
    the queue for a core; CPU time is what the command itself costs."""
    import resource

    walls, cpus, out = [], [], ""
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        walls.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
        if p.returncode != 0:
            raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
        out = p.stdout.strip().splitlines()[-1]
    return statistics.median(walls), statistics.median(cpus), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--clip", type=Path, default=None)
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="keep PYTHONDONTWRITEBYTECODE as the environment has it (every import recompiles)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mgr-bench-"))
    try:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        if not a.no_bytecode_cache:
            # A normal Python caches compiled bytecode after the first import. Some sandboxes set
            # PYTHONDONTWRITEBYTECODE, which makes every cold start recompile scipy/librosa/sklearn/TF
            # from source; cache into a private prefix instead (the venv is not touched).
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        clip = a.clip or make_clip(tmp / "one_clip.wav")
        dirs = {}
        for name, maker in (("svm", make_svm), ("cnn2d", make_cnn2d)):
            d = a.models / name
            if not (d / "model.json").is_file():
                print(f"{d} not found: building a stand-in in {tmp}", file=sys.stderr)
                d = maker(tmp)
            dirs[name] = d
        env["MGR_CACHE_DIR"] = str(tmp / "cache")
        sys.path.insert(0, str(ROOT / "src"))
        os.environ["MGR_CACHE_DIR"] = env["MGR_CACHE_DIR"]
        from mgr.pretrained.builtin import ensure_builtin

        dirs["musicnn-msd"] = ensure_builtin("musicnn_msd")  # built once, untimed
        naive_of = {"svm": NAIVE_CLASSICAL, "cnn2d": NAIVE_DEEP, "musicnn-msd": NAIVE_TAGGER}
        model_arg = {name: (name if name == "musicnn-msd" else str(d)) for name, d in dirs.items()}
        mgr = str(Path(sys.executable).parent / "mgr")
        # warm the OS file cache, the bytecode cache and numba's on-disk cache once for both sides
        # (not timed), as any second run on a user's machine would find them
        for name, d in dirs.items():
            subprocess.run([mgr, "predict", str(clip), "--model", model_arg[name], "-f", "json"], capture_output=True, env=env)
            naive_src = naive_of[name]
            subprocess.run([sys.executable, "-c", naive_src, str(d), str(clip)], capture_output=True, env=env)
        subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, env=env)
        tf_s, tf_cpu, _ = timed([sys.executable, "-c", "import tensorflow; print('ok')"], a.repeat, env)
        results = {}
        for name, d in dirs.items():
            naive_src = naive_of[name]
            ours, ours_cpu, out_ours = timed([mgr, "predict", str(clip), "--model", model_arg[name], "-f", "json"],
                                             a.repeat, env)
            naive, naive_cpu, out_naive = timed([sys.executable, "-c", naive_src, str(d), str(clip)], a.repeat, env)
            goal = 0.4 if name == "svm" else 0.8
            results[name] = {"mgr_s": round(ours, 3), "naive_s": round(naive, 3), "speedup": round(naive / ours, 2),
                             "import_tf_s": round(tf_s, 3), "ratio_to_import_tf": round(ours / tf_s, 3),
                             "cpu_ratio_to_import_tf": round(ours_cpu / max(tf_cpu, 1e-9), 3),
                             "mgr_cpu_s": round(ours_cpu, 3), "naive_cpu_s": round(naive_cpu, 3),
                             "cpu_speedup": round(naive_cpu / max(ours_cpu, 1e-9), 2),
                             "load_avg_1min": round(os.getloadavg()[0], 2), "n_cpus": os.cpu_count(),
                             "goal_ratio": goal, "meets_goal": ours / tf_s <= goal,
                             "mgr_genre": json.loads(out_ours)["genre"] or json.loads(out_ours)["top_k"][0]["label"],
                             "naive_genre": json.loads(out_naive)["genre"]}
        print(f"import tensorflow: {tf_s:.2f} s wall, {tf_cpu:.2f} s cpu")
        print(f"{'model':11s} {'mgr predict':>12s} {'/ import tf':>12s} {'naive':>9s} {'speed-up':>9s} {'cpu mgr':>8s} "
              f"{'cpu naive':>9s}  goal")
        for name, r in results.items():
            print(f"{name:11s} {r['mgr_s']:11.2f}s {r['ratio_to_import_tf']:11.2f}x {r['naive_s']:8.2f}s "
                  f"{r['speedup']:8.1f}x {r['mgr_cpu_s']:7.2f}s {r['naive_cpu_s']:8.2f}s  <= {r['goal_ratio']}x import tf: "
                  f"{'met' if r['meets_goal'] else 'NOT met'}  (genre mgr={r['mgr_genre']}, naive={r['naive_genre']})")
        print(json.dumps({"clip": str(clip), "repeat": a.repeat, "bytecode_cache": not a.no_bytecode_cache,
                          "results": results}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # (clip, stand-ins and bytecode cache)


if __name__ == "__main__":
    main()
