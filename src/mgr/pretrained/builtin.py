"""Built-in pretrained models: usable with no dataset and no training run.

``musicnn_msd`` and ``musicnn_mtt`` (:mod:`mgr.pretrained.musicnn`) are built from the
checkpoints of the installed ``musicnn`` wheel the first time they are needed and kept in a
cache directory (``$MGR_CACHE_DIR``, else ``$XDG_CACHE_HOME/mgr``, else ``~/.cache/mgr``) as
``pretrained/<name>-<musicnn version>-<checkpoint hash>/`` with ``model.keras``, ``model.onnx``
and the card ``model.json``. Nothing is downloaded: the weights come from the wheel that
``uv sync`` installed. The build imports TensorFlow, so it runs once, in a child process (the
caller never imports TensorFlow, and forked extraction workers inherit no TF threads); later
calls only check the card's hashes and open the ONNX file with onnxruntime.

:func:`track_embedding` is the ``musicnn_msd`` / ``musicnn_mtt`` feature set: the exported
backbone run by onnxruntime (one session per process, one intra-op thread, so that extraction
workers do not oversubscribe the cores) on musicnn's front end
(:func:`mgr.dsp.frontend.musicnn_frontend`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mgr.audio.decode import resample
from mgr.errors import ArtifactError
from mgr.inference.runtime import OnnxModel
from mgr.io import file_hash
from mgr.pretrained import musicnn

BUILTIN = {"musicnn_msd": "MSD_musicnn", "musicnn_mtt": "MTT_musicnn"}
ALIASES = {"musicnn-msd": "musicnn_msd", "musicnn-mtt": "musicnn_mtt"}

__all__ = ["BUILTIN", "builtin_name", "cache_root", "embedding_names", "ensure_builtin", "track_embedding"]


def builtin_name(spec: str) -> str | None:
    """``musicnn-msd`` / ``musicnn_msd`` -> ``musicnn_msd``; None for anything else."""
    s = ALIASES.get(spec, spec)
    return s if s in BUILTIN else None


def cache_root() -> Path:
    if os.environ.get("MGR_CACHE_DIR"):
        return Path(os.environ["MGR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mgr"


def _source_key(name: str) -> str:
    """musicnn version + a hash of the checkpoint files: a new wheel gets a new cache entry."""
    ck = musicnn.checkpoint_dir(BUILTIN[name])
    h = hashlib.sha256()
    for f in musicnn.CHECKPOINT_FILES:
        h.update(f.encode())
        h.update(hashlib.sha256((ck / f).read_bytes()).digest())
    version = musicnn._wheel_info()["version"]
    return f"{version}-{h.hexdigest()[:12]}"


def _card(d: Path) -> dict:
    return json.loads((d / "model.json").read_text())


def _complete(d: Path) -> bool:

    try:
        card = _card(d)
        return bool(card.get("onnx_sha256")) and file_hash(d / card["onnx_file"]) == card["onnx_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_builtin(name: str) -> Path:
    """The directory of built-in model ``name`` (built on first use; see the module docstring)."""
    name = builtin_name(name) or name
    if name not in BUILTIN:
        raise ArtifactError(f"unknown built-in model {name!r} (built in: {', '.join(BUILTIN)})")
    try:
        key = _source_key(name)
    except FileNotFoundError as e:
        raise ArtifactError(f"built-in model {name}: {e} (run `uv sync` to install the musicnn wheel)") from None
    root = cache_root() / "pretrained"
    d = root / f"{name}-{key}"
    if _complete(d):
        return d
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f".{name}.lock", "w")  # noqa: SIM115 - held until the build is done
    except OSError as e:
        raise ArtifactError(f"built-in model {name}: cannot write the cache {root} ({e.strerror})") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same model
        if _complete(d):
            return d
        print(f"building the built-in model {name} from the musicnn wheel (once) -> {d}", file=sys.stderr)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        r = subprocess.run([sys.executable, "-m", "mgr.pretrained.builtin", BUILTIN[name], str(d)],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0 or not _complete(d):
            tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise ArtifactError(f"built-in model {name}: the build failed ({tail[:300]})")
    return d


def embedding_names(feature_set: str) -> list[str]:
    """Column names of feature set ``musicnn_msd`` / ``musicnn_mtt``."""
    return musicnn.embedding_names(feature_set)


_SESSIONS: dict[str, object] = {}


def track_embedding(feature_set: str, y: np.ndarray, sr: int) -> np.ndarray:
    """``(400,)`` embedding of a mono signal at any sample rate (resampled to 16 kHz)."""

    if feature_set not in _SESSIONS:
        d = ensure_builtin(feature_set)
        card = _card(d)
        _SESSIONS[feature_set] = OnnxModel(d / card["onnx_file"], sha256=card["onnx_sha256"], threads=1)
    y = np.asarray(y, dtype=np.float32)
    if int(sr) != musicnn.SR:
        y = resample(y, int(sr), musicnn.SR)
    return musicnn.track_embedding(_SESSIONS[feature_set].run, y)


if __name__ == "__main__":  # python -m mgr.pretrained.builtin <backbone> <out_dir>: the one-off build
    musicnn.save_backbone(sys.argv[1], sys.argv[2], onnx=True)
