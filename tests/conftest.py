"""Shared test fixtures. Tests make their own data; nothing touches the network but 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project_root() -> Path:
    return ROOT
