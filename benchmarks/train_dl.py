"""Deep-training throughput: the feeder's windows/s against each model's training-step rate,
and the epoch time per model on the current data (default: data/spectrograms.h5 and params.yaml).

Run: uv run python benchmarks/train_dl.py [--models cnn2d tempo_genre] [--steps 20] [--epochs 2]
     [--store data/spectrograms.h5] [--json out.json] [--jit auto|on|off]

For each model:
- ``feeder``: windows/s that ``mgr.models.feeder.window_feeder`` delivers (random windows from the
  train split + targets/weights, plus SpecAugment/mixup if params enable them), single thread;
- ``step``: windows/s of ``train_on_batch`` on a pre-drawn batch (compiled, after warm-up);
- ``ratio``: feeder / step (> 1 means the feeder is not the bottleneck);
- ``epoch``: wall time of ``fit`` epochs with the feeder and params' steps per epoch (the first
  epoch includes graph tracing/compilation, reported separately).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(ROOT / "data/spectrograms.h5"))
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--models", nargs="*", default=None, help="default: dl.models from params")
    ap.add_argument("--steps", type=int, default=20, help="timed train steps / feeder batches")
    ap.add_argument("--epochs", type=int, default=2, help="fit epochs to time (first includes compile)")
    ap.add_argument("--jit", choices=("auto", "on", "off"), default="off", help="XLA jit_compile (training uses off)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    import keras
    import numpy as np

    from mgr.features.store import SpectrogramStore
    from mgr.models import deep
    from mgr.models.feeder import make_targets, window_feeder
    from mgr.models.training import store_fold
    from mgr.params import load_params

    p = load_params(args.params)
    tp = p.train
    names = args.models or list(p.dl.models)
    results = []
    with SpectrogramStore(args.store) as store:
        fold = store_fold(store, tp.fold)
        tr = store.indices("train", fold=fold)
        wf = store.frames_for_seconds(tp.window_s)
        mean, std = store.stats(fold=fold)
        print(f"store: {len(store)} tracks ({tr.size} train), {store.n_mels} x {wf} windows, "
              f"memmapped={getattr(store, 'memmapped', '?')}, {os.cpu_count()} CPUs")
        for name in names:
            mp = getattr(p.dl, name)
            batch = int(mp.batch_size or tp.batch_size)
            tempo = name in deep.TEMPO_MODELS and bool(np.isfinite(store.tempo_bpm[tr]).any())
            n_tags = len(store.tag_vocab) if tp.tags_head else 0
            tg = make_targets(store, tr, tp, tempo=tempo, tags=n_tags > 0)
            steps = tp.steps_per_epoch or max(1, math.ceil(tr.size * tp.windows_per_track / batch))
            feeder = window_feeder(store, tr, window_frames=wf, batch_size=batch, steps=max(steps, args.steps),
                                   targets=tg, fill=mean, specaugment=tp.specaugment, mixup_alpha=tp.mixup,
                                   seed=tp.seed)
            feeder[0]
            t = time.perf_counter()
            for i in range(args.steps):
                X, y, w = feeder[i % len(feeder)]
            feed_rate = args.steps * batch / (time.perf_counter() - t)

            keras.utils.set_random_seed(tp.seed)
            model = deep.build(name, (store.n_mels, wf, 1), len(store.labels),
                               n_tempo_classes=len(tg.tempo_bins["centres"]) if tempo else 0, n_tags=n_tags,
                               params=mp, mean=mean, std=std)
            jit = {"auto": "auto", "on": True, "off": False}[args.jit]
            deep.compile_model(model, tp.learning_rate, tg.outputs, jit_compile=jit)
            t = time.perf_counter()
            model.train_on_batch(X, y, sample_weight=w)
            compile_s = time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(X, y, sample_weight=w)
            step_rate = args.steps * batch / (time.perf_counter() - t)

            model2 = deep.build(name, (store.n_mels, wf, 1), len(store.labels),
                                n_tempo_classes=len(tg.tempo_bins["centres"]) if tempo else 0, n_tags=n_tags,
                                params=mp, mean=mean, std=std)
            deep.compile_model(model2, tp.learning_rate, tg.outputs, jit_compile=jit)
            fe = window_feeder(store, tr, window_frames=wf, batch_size=batch, steps=steps, targets=tg, fill=mean,
                               specaugment=tp.specaugment, mixup_alpha=tp.mixup, seed=tp.seed, workers=tp.workers)
            times = []

            class T(keras.callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    self.t = time.perf_counter()

                def on_epoch_end(self, epoch, logs=None):
                    times.append(time.perf_counter() - self.t)

            model2.fit(fe, epochs=args.epochs, verbose=0, callbacks=[T()])
            r = {
                "model": name,
                "params": int(model.count_params()),
                "batch": batch,
                "feeder_windows_per_s": round(feed_rate, 1),
                "step_windows_per_s": round(step_rate, 1),
                "feeder_over_step": round(feed_rate / step_rate, 2),
                "first_step_s": round(compile_s, 2),
                "steps_per_epoch": steps,
                "first_epoch_s": round(times[0], 2),
                "epoch_s": round(float(np.median(times[1:])), 2) if len(times) > 1 else None,
                "jit": args.jit,
            }
            results.append(r)
            print(json.dumps(r), flush=True)
    print(f"\n{'model':14s} {'params':>9s} {'feeder w/s':>11s} {'step w/s':>9s} {'ratio':>6s} "
          f"{'epoch s':>8s} {'1st epoch s':>11s}")
    for r in results:
        print(f"{r['model']:14s} {r['params']:9d} {r['feeder_windows_per_s']:11.0f} {r['step_windows_per_s']:9.0f} "
              f"{r['feeder_over_step']:6.1f} {str(r['epoch_s']):>8s} {r['first_epoch_s']:11.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
