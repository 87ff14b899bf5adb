"""Training on several devices: MirroredStrategy over 2 logical CPUs matches one device, and the
feeder reads a sharded store like a one-file store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_training import make_store

HERE = Path(__file__).resolve().parent


def test_strategy_none_is_a_noop_scope():
    from mgr.distributed.strategy import train_scope
    from mgr.params import TrainParams

    with train_scope(TrainParams()) as s:
        assert s is None


def test_unknown_distribution_is_a_params_error():
    from mgr.errors import ParamsError
    from mgr.params import params_from_dict

    with pytest.raises(ParamsError):
        params_from_dict({"train": {"distribution": "tpu_pod"}})
    assert params_from_dict({"train": {"distribution": "mirrored"}}).train.distribution == "mirrored"


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_matches_one_device(tmp_path):
    store = make_store(tmp_path, reps=3)
    out = tmp_path / "res.json"
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, str(HERE / "_distributed_train.py"), str(store), "2", "2", "4", str(out)],
                   check=True, env=env, timeout=300)
    res = json.loads(out.read_text())
    assert res["logical_cpus"] == 2
    one, two = res["mirrored_1"], res["mirrored"]
    assert (res["none"]["replicas"], one["replicas"], two["replicas"]) == (1, 1, 2)
    # same global batch and draws: the same run up to the order of the gradient sums (the default
    # path draws other windows per epoch, see tests/_distributed_train.py: similar loss, not equal)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-3, atol=1e-4)
    # weights: Adam normalises each update, so where a gradient is ~0 the sum order can flip its
    # sign and move that weight by a step (learning rate 0.003) now and then: a few steps, not 1e-4
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-2)
    assert one["val_accuracy"] == pytest.approx(two["val_accuracy"], abs=1e-9)
    assert res["none"]["loss"][0] == pytest.approx(one["loss"][0], rel=0.1)


def test_mixed_precision_scope_builds_float16_layers_and_restores_the_policy():
    import keras

    from mgr.distributed.strategy import train_scope
    from mgr.params import TrainParams

    with train_scope(TrainParams(mixed_precision=True)):
        layer = keras.layers.Dense(4)
        layer.build((None, 3))
    assert layer.compute_dtype == "float16" and layer.variable_dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"
