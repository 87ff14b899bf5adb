"""Shared test fixtures. Tests make their own data; nothing touches the network but 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# linear algebra as every stage runs it (stages/_common.py): one OpenBLAS core type and one thread,
# so in-process fits are the same bits whatever other tests did to BLAS's thread pool
for _k, _v in (("OPENBLAS_CORETYPE", "Sandybridge"), ("OPENBLAS_NUM_THREADS", "1")):
    os.environ.setdefault(_k, _v)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _private_model_cache(tmp_path_factory):
    """Built-in pretrained models (mgr.pretrained.builtin) are built into a cache directory on
    first use: keep the suite's out of the user's ~/.cache, built once per session."""
    old = os.environ.get("MGR_CACHE_DIR")
    os.environ["MGR_CACHE_DIR"] = str(tmp_path_factory.mktemp("mgr-cache"))
    yield
    if old is None:
        os.environ.pop("MGR_CACHE_DIR", None)
    else:
        os.environ["MGR_CACHE_DIR"] = old


@pytest.fixture
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory) -> Path:
    """A throw-away copy of the project with tiny params (tests/test_pipeline.TINY), a git repo,
    after one `dvc repro` on this machine as it is. Shared by the end-to-end tests
    (test_pipeline, test_crossmachine); a test that changes it restores what it changed."""
    import yaml

    from test_pipeline import DVC, TINY, _copy_project, _git, _merge, _run

    work = tmp_path_factory.mktemp("pipeline")
    _copy_project(ROOT, work)
    params = yaml.safe_load((work / "params.yaml").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump(_merge(params, TINY), sort_keys=False))
    _git(work, "init", "-q")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "tiny")
    r = _run([DVC, "repro"], work)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work
