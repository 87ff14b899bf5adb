"""Shared test fixtures. Tests make their own data; nothing touches the network but 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
