"""Subprocess helper of tests/test_distributed_training.py and benchmarks/scale.py.

``python tests/_distributed_train.py STORE N_DEVICES EPOCHS STEPS OUT_JSON``: splits the CPU into
``N_DEVICES`` logical devices (before TensorFlow starts, hence a process of its own), then trains
cnn2d (no dropout, no BatchNorm: the replicas' only difference is the order of the gradient sums)
with ``train.distribution: none``, then ``mirrored`` over one device (``mirrored_1``) and, when
``N_DEVICES > 1``, over all of them (``mirrored``); writes each run's loss history, leading
weights, val metrics and train step rate to OUT_JSON.

Why ``mirrored_1``: Keras iterates the feeder once ahead of training under a distribution
strategy, so the feeder's per-epoch draws are not the ones of the default path (an equally random
set of windows); the one-device mirrored run is the like-for-like single-device reference.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(store: str, n_devices: int, epochs: int, steps: int, out: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    if n_devices > 1:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n_devices)
    import numpy as np

    from mgr.features.store import SpectrogramStore
    from mgr.models.training import train_model
    from mgr.params import DlModelParams, TrainParams

    mp = DlModelParams(epochs=epochs, dropout=0.0, width=0.25, learning_rate=0.003)
    res = {"logical_cpus": len(tf.config.list_logical_devices("CPU"))}
    from mgr.distributed import strategy

    runs = ["none", "mirrored_1"] + (["mirrored"] if n_devices > 1 else [])
    with SpectrogramStore(store) as st:
        for run in runs:
            dist = "mirrored" if run.startswith("mirrored") else "none"
            strategy._STRATEGIES.pop("mirrored", None)
            if run == "mirrored_1":
                strategy._STRATEGIES["mirrored"] = tf.distribute.MirroredStrategy(["/cpu:0"])
            tp = TrainParams(window_s=1.0, batch_size=16, steps_per_epoch=steps, early_stopping_patience=50,
                             reduce_lr_patience=50, workers=1, seed=3, tags_head=False, distribution=dist)
            t0 = time.perf_counter()
            r = train_model("cnn2d", st, tp, mp)
            secs = time.perf_counter() - t0
            w = [np.asarray(v) for v in r.model.get_weights()]
            res[run] = {
                "loss": r.history["loss"],
                "val_accuracy": (r.metrics.get("val") or {}).get("track", {}).get("accuracy"),
                "weights_abs_sum": float(sum(np.abs(x).sum() for x in w)),
                "weights": [x.ravel()[:64].tolist() for x in w],
                "train_seconds": r.metrics["train_seconds"],
                "steps_per_second": epochs * steps / r.metrics["train_seconds"],
                "seconds": secs,
                "replicas": int(r.model.distribute_strategy.num_replicas_in_sync),
            }
            import keras

            keras.backend.clear_session()
    Path(out).write_text(json.dumps(res))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
