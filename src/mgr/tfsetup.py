"""TensorFlow set up for results that depend as little as possible on the machine: one call
before training.

TensorFlow's CPU kernels differ between machines in three ways, each measured to move trained
weights in their last bits (and, through early stopping and argmax, whole metrics):

* **oneDNN** (``TF_ENABLE_ONEDNN_OPTS``, on by default on x86 Linux) picks its convolution and
  matmul kernels by the CPU's instruction set; ``ONEDNN_MAX_CPU_ISA`` caps the choice. We cap it at
  :data:`ONEDNN_ISA` (AVX2), so an AVX-512 or AMX machine runs the kernels an AVX2 machine runs.
  Turning oneDNN off (Eigen kernels, compiled into the wheel for one instruction set, the same code
  on every x86-64 CPU) would remove the rest of the CPU dependence but made training 3-4x slower
  (``benchmarks/crossmachine.py``), so it stays on; ``TF_ENABLE_ONEDNN_OPTS=0`` in the
  environment is the choice for whoever wants that trade.
* **thread pools**: reductions are partitioned by the number of intra-op threads, by default the
  number of cores. A fixed pool size (:data:`THREADS`, whatever the machine has) fixes the partition.
* **op determinism** (``tf.config.experimental.enable_op_determinism``) removes the remaining
  scheduling-dependent kernels; with ``keras.utils.set_random_seed`` a rerun gives the same bits.

What remains machine-sensitive: a CPU without AVX2 (oneDNN then runs SSE4.1 kernels), and
oneDNN's own blocking choices, which its documentation ties to the CPU ("reproducible on the same
CPU"); the pull-request report therefore reproduces the base commit on the same runner
(``scripts/pr_report.py``). Import-light: TensorFlow is imported only inside :func:`configure`.
"""

from __future__ import annotations

import os
import sys

#: intra-op threads of every training process (inter-op: 1): fixed, so that the partition
#: of each reduction -- and so the bits of the result -- is the same on a 2-core laptop and a
#: 64-core server. Two matches the machines the project is sized for.
THREADS = 2
#: the highest instruction set oneDNN may use (``ONEDNN_MAX_CPU_ISA``)
ONEDNN_ISA = "AVX2"

_done = False


def prepare_env() -> None:
    """Set the environment TensorFlow reads at import: oneDNN capped at :data:`ONEDNN_ISA`, quiet
    logs. Call before the first ``import tensorflow``/``keras`` of the process; what the user set
    in the environment is kept (e.g. ``TF_ENABLE_ONEDNN_OPTS=0``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", ONEDNN_ISA)


def configure(threads: int = THREADS) -> dict:
    """Prepare the environment, import TensorFlow, fix its thread pools to ``threads`` intra-op /
    1 inter-op thread and turn on op determinism (idempotent). Returns what is in force, for the
    run facts: ``{"onednn_isa": str | None, "intra_op_threads": int, "inter_op_threads": int,
    "deterministic_ops": True, "imported_before": bool}`` (``imported_before``: TensorFlow was
    already imported, e.g. by a test process, so the environment came too late for it)."""
    global _done
    imported_before = "tensorflow" in sys.modules
    prepare_env()
    import tensorflow as tf

    if not _done:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # the runtime already started (pools fixed for this process)
            pass
        tf.config.experimental.enable_op_determinism()
        _done = True
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") not in ("0", "false", "False")
    return {
        "onednn_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") if onednn else None,
        "imported_before": imported_before,
        "intra_op_threads": int(tf.config.threading.get_intra_op_parallelism_threads()),
        "inter_op_threads": int(tf.config.threading.get_inter_op_parallelism_threads()),
        "deterministic_ops": True,
    }
