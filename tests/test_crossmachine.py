"""Same inputs, same bytes on every machine: the tiny pipeline under simulated machines.

The tiny project (conftest's ``tiny_project``: `dvc repro` on this machine as it is, 2 workers)
is copied and its stages rerun, forced, under two other simulated machines:

- ``lowest``: NumPy's baseline SIMD only (``NPY_DISABLE_CPU_FEATURES``: every dispatch target this
  CPU has), glibc's libm without its FMA/AVX2 variants (``GLIBC_TUNABLES``), one CPU
  (``taskset``), one thread for BLAS/OpenMP/onnxruntime, one worker process;
- ``middle``: NumPy up to AVX2, oneDNN capped at AVX2 explicitly, three workers.

Each must reproduce the stores (log-mel and musicnn front ends), the feature table (handcrafted
features and the musicnn embedding), a logistic regression, a deep model (training, Keras and ONNX
files), the SVM (libsvm and its temperature fit call libm and NumPy), the stacked model, the tempo
estimator and evaluate's metrics, predictions and reports byte for byte, and
the same output hashes in dvc.lock. What cannot be simulated on one machine (onnxruntime's and
oneDNN's kernel choice by CPU generation) is covered by the pull-request report, which reproduces
the base on the same runner (tests/test_metrics_diff.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from test_pipeline import DVC, _run

pytestmark = pytest.mark.slow

STAGES = ["spectrogram", "spectrogram-musicnn", "features", "train-ml@logreg", "train-ml-embedding@svm",
          "train-ml-stacked@fusion", "train-dl@cnn2d", "train-tempo", "evaluate"]
COMPARED = ["data/spectrograms.h5", "data/spectrograms_musicnn.h5", "data/features.parquet", "models/logreg",
            "models/svm-musicnn_msd", "models/fusion", "models/cnn2d", "models/tempo", "metrics", "reports/predictions", "reports/leaderboard.md",
            "reports/tempo.md", "reports/confusion", "dvclive/cnn2d/plots"]


def _profiles() -> dict[str, tuple[dict[str, str], int, list[str]]]:
    """name -> (environment, workers, command prefix)."""
    import numpy as np

    umath = np._core._multiarray_umath
    baseline = set(umath.__cpu_baseline__)
    dispatch = [k for k, v in umath.__cpu_features__.items() if v and k not in baseline]
    above_avx2 = [k for k in dispatch if k.startswith(("AVX512", "X86_V4"))]
    one_cpu = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] if shutil.which("taskset") else []
    return {
        "lowest": ({"NPY_DISABLE_CPU_FEATURES": " ".join(dispatch), "OMP_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1", "MGR_ONNX_THREADS": "1",
                    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2_Usable,-FMA_Usable,-AVX2,-FMA,-AVX512F"}, 1, one_cpu),
        "middle": ({"NPY_DISABLE_CPU_FEATURES": " ".join(above_avx2), "ONEDNN_MAX_CPU_ISA": "AVX2",
                    "MGR_ONNX_THREADS": "2"}, 3, []),
    }


def _outs(lock: Path) -> dict[str, str]:
    st = yaml.safe_load(lock.read_text())["stages"]
    return {f"{s}:{o['path']}": o.get("md5", "") for s, v in st.items() for o in v.get("outs", [])}


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for c in COMPARED:
        p = root / c
        for f in sorted([p] if p.is_file() else p.rglob("*") if p.is_dir() else []):
            if f.is_file():
                out[f.relative_to(root).as_posix()] = f.read_bytes()
    return out


def _rerun(src: Path, dest: Path, env: dict[str, str], workers: int, prefix: list[str]) -> str:
    shutil.copytree(src, dest, symlinks=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for section in ("data", "spectrogram", "features", "tempo", "evaluate"):
        params[section]["workers"] = workers  # an execution knob: tracked by no stage
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = []
    for stage in STAGES:
        r = subprocess.run([*prefix, DVC, "repro", "--force", "--no-run-cache", "--single-item", stage], cwd=dest,
                           capture_output=True, text=True,
                           env={**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2",
                                "PATH": f"{Path(DVC).parent}{os.pathsep}{os.environ['PATH']}", **env})
        assert r.returncode == 0, (stage, r.stdout[-2000:] + r.stderr[-2000:])
        assert f"Running stage '{stage}'" in r.stdout, (stage, r.stdout[-1000:])  # really recomputed
        log.append(r.stdout)
    return "\n".join(log)


@pytest.fixture(scope="module")
def machines(tiny_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("machines")
    reference = base / "reference"  # a snapshot: other tests change the tiny project later
    shutil.copytree(tiny_project, reference, symlinks=True)
    profiles = _profiles()
    with ThreadPoolExecutor(len(profiles)) as ex:  # the two simulated machines side by side
        futs = {n: ex.submit(_rerun, reference, base / n, *profiles[n]) for n in profiles}
        for f in futs.values():
            f.result()
    return {"reference": reference, **{n: base / n for n in profiles}}


@pytest.mark.parametrize("machine", ["lowest", "middle"])
def test_every_output_is_the_same_bytes(machines: dict[str, Path], machine: str) -> None:
    ref, other = _files(machines["reference"]), _files(machines[machine])
    assert set(ref) == set(other)
    assert len([f for f in ref if f.startswith("models/")]) >= 6 and any(f.startswith("metrics/") for f in ref)
    differ = [f for f in ref if ref[f] != other[f]]
    assert not differ, f"{machine}: {differ}"


@pytest.mark.parametrize("machine", ["lowest", "middle"])
def test_dvc_lock_hashes_are_the_same(machines: dict[str, Path], machine: str) -> None:
    ref, other = _outs(machines["reference"] / "dvc.lock"), _outs(machines[machine] / "dvc.lock")
    assert ref == other
    r = _run([DVC, "status"], machines[machine])
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout[-2000:]
