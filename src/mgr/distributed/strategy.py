"""Training on many devices: the ``tf.distribute`` strategy of ``train.distribution``.

- ``none``: the default strategy (one device; what the one-machine pipeline always did).
- ``mirrored``: :class:`tf.distribute.MirroredStrategy` over every local GPU; without GPUs, over
  every logical CPU device (several exist only when configured, e.g. by
  ``tf.config.set_logical_device_configuration`` as the tests do), else the one CPU.
- ``multi_worker``: :class:`tf.distribute.MultiWorkerMirroredStrategy` across hosts; each host
  runs the same train-dl command with its ``TF_CONFIG`` (cluster spec + its task index), see
  docs/SCALE.md. Without ``TF_CONFIG`` it is a one-worker run.

``train.batch_size`` stays the **global** batch (split over the replicas), so the learning-rate
schedule and the windows drawn per epoch do not depend on the number of devices; results match
the one-device run up to the order of floating-point sums (tested within tolerance).

``train.mixed_precision``: Keras' ``mixed_float16`` policy while the model is built (variables
stay float32; Keras keeps losses in float32). Pays off on GPUs with tensor cores only.

The strategy is created once per process (TensorFlow allows one multi-worker strategy per
process) and is used to build and compile the model; ``model.fit`` then runs under it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mgr.errors import ParamsError

__all__ = ["get_strategy", "n_replicas", "train_scope"]

_STRATEGIES: dict[str, Any] = {}


def get_strategy(distribution: str) -> Any:
    """The ``tf.distribute.Strategy`` for ``distribution`` (``none|mirrored|multi_worker``)."""
    import tensorflow as tf

    if distribution == "none":
        return tf.distribute.get_strategy()
    if distribution not in ("mirrored", "multi_worker"):
        raise ParamsError(f"params: train.distribution: {distribution!r} is not allowed "
                          "(allowed: none, mirrored, multi_worker)")
    if distribution not in _STRATEGIES:
        if distribution == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
            _STRATEGIES[distribution] = tf.distribute.MirroredStrategy(devices=devices)
        else:
            _STRATEGIES[distribution] = tf.distribute.MultiWorkerMirroredStrategy()
    return _STRATEGIES[distribution]


def n_replicas(distribution: str) -> int:
    return int(get_strategy(distribution).num_replicas_in_sync)


@contextlib.contextmanager
def train_scope(tp: Any) -> Iterator[Any]:
    """Build / compile a model under this: the strategy's scope and the precision policy of ``tp``
    (a :class:`mgr.params.TrainParams`). A no-op context for the defaults."""
    distribution = getattr(tp, "distribution", "none")
    mixed = bool(getattr(tp, "mixed_precision", False))
    if distribution == "none" and not mixed:
        yield None
        return
    import keras

    old = keras.mixed_precision.global_policy().name
    strategy = get_strategy(distribution)
    try:
        if mixed:
            keras.mixed_precision.set_global_policy("mixed_float16")
        with strategy.scope():
            yield strategy
    finally:
        keras.mixed_precision.set_global_policy(old)
