"""Built-in pretrained models: usable with no dataset and no training run.

``musicnn_msd`` and ``musicnn_mtt`` (:mod:`mgr.pretrained.musicnn`) are built from the
checkpoints of the installed ``musicnn`` wheel the first time they are needed and kept in a
cache directory (``$MGR_CACHE_DIR``, else ``$XDG_CACHE_HOME/mgr``, else ``~/.cache/mgr``) as
``pretrained/<name>-<musicnn version>-<checkpoint hash>/`` with ``model.keras``, ``model.onnx``
and the card ``model.json``. Nothing is downloaded: the weights come from the wheel that
``uv sync`` installed. The build imports TensorFlow, so it runs once, in a child process (the
caller never imports TensorFlow, and forked extraction workers inherit no TF threads); later
calls only check the card's hashes and open the ONNX file with onnxruntime.

:func:`track_embedding` is the ``musicnn_msd`` / ``musicnn_mtt`` feature set (and
:func:`track_taggram` the ``musicnn_msd_tags`` / ``musicnn_mtt_tags`` set, from the same forward
pass: the last signal's outputs are kept, so a table holding both runs the backbone once): the exported
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
from typing import Any

import numpy as np

from mgr.audio.decode import resample
from mgr.errors import ArtifactError
from mgr.inference.runtime import OnnxModel
from mgr.io import atomic_path, file_hash, library_versions, write_json
from mgr.pretrained import embedding, musicnn

BUILTIN = {"musicnn_msd": "MSD_musicnn", "musicnn_mtt": "MTT_musicnn"}
ALIASES = {"musicnn-msd": "musicnn_msd", "musicnn-mtt": "musicnn_mtt"}

__all__ = ["BUILTIN", "builtin_name", "cache_root", "embedding_names", "ensure_builtin", "tag_names",
           "track_embedding", "track_taggram"]


def builtin_name(spec: str) -> str | None:
    """``musicnn-msd`` / ``musicnn_msd`` -> ``musicnn_msd``; None for anything else."""
    s = ALIASES.get(spec, spec)
    return s if s in BUILTIN else None


def cache_root() -> Path:
    if os.environ.get("MGR_CACHE_DIR"):
        return Path(os.environ["MGR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mgr"


#: bumped when the artifact :func:`save_backbone` writes changes (its card or files), so a cache
#: entry built by an older mgr is rebuilt instead of reused
BUILD_VERSION = 2


def _source_key(name: str) -> str:
    """musicnn version + a hash of the checkpoint files + :data:`BUILD_VERSION`: a new wheel or a
    new artifact layout gets a new cache entry."""
    ck = musicnn.checkpoint_dir(BUILTIN[name])
    h = hashlib.sha256(f"build {BUILD_VERSION}".encode())
    for f in musicnn.CHECKPOINT_FILES:
        h.update(f.encode())
        h.update(hashlib.sha256((ck / f).read_bytes()).digest())
    version = musicnn.wheel_info()["version"]
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
    """The directory of built-in model ``name`` (built on first use; see the module docstring;
    a taggram feature set ``musicnn_msd_tags`` names its backbone ``musicnn_msd``)."""
    name = builtin_name(name) or builtin_name(name.removesuffix("_tags")) or name
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


def tag_names(feature_set: str) -> list[str]:
    """Column names of feature set ``musicnn_msd_tags`` / ``musicnn_mtt_tags``."""
    return embedding.tag_names(feature_set.removesuffix("_tags"))


_SESSIONS: dict[str, object] = {}
#: the last signal's outputs per backbone: (key of the signal, outputs)
_LAST: dict[str, tuple[tuple, dict[str, np.ndarray]]] = {}


def _track_outputs(backbone: str, y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """:func:`mgr.pretrained.embedding.track_features` of a mono signal at any sample rate
    (resampled to 16 kHz); the same signal twice in a row (the embedding, then the taggram of one
    clip) runs the backbone once."""
    import hashlib

    y = np.ascontiguousarray(y, dtype=np.float32)
    key = (int(sr), y.shape, hashlib.blake2b(y.tobytes(), digest_size=16).digest())
    last = _LAST.get(backbone)
    if last is not None and last[0] == key:
        return last[1]
    if backbone not in _SESSIONS:
        d = ensure_builtin(backbone)
        card = _card(d)
        _SESSIONS[backbone] = OnnxModel(d / card["onnx_file"], sha256=card["onnx_sha256"], threads=1)
    y16 = resample(y, int(sr), musicnn.SR) if int(sr) != musicnn.SR else y
    out = embedding.track_features(_SESSIONS[backbone].run, y16)
    _LAST[backbone] = (key, out)
    return out


def track_embedding(feature_set: str, y: np.ndarray, sr: int) -> np.ndarray:
    """``(400,)`` embedding of a mono signal at any sample rate (resampled to 16 kHz)."""
    return _track_outputs(feature_set, y, sr)["embedding"]


def track_taggram(feature_set: str, y: np.ndarray, sr: int) -> np.ndarray:
    """``(50,)`` mean taggram (``musicnn_msd_tags``: the MSD backbone's tag scores) of a mono signal."""
    return _track_outputs(feature_set.removesuffix("_tags"), y, sr)["tags"]


# ------------------------------------------------------------------- the artifact (child process)
ONNX_ATOL = 1e-3


def _onnx_parity(model: Any, onnx_path: Path) -> dict[str, float]:
    """Max abs difference per output between Keras and the ONNX file on fixed sample patches;
    :class:`~mgr.errors.ArtifactError` above :data:`ONNX_ATOL`."""

    X = np.random.default_rng(0).uniform(0.0, 4.0, (3, musicnn.PATCH_FRAMES, musicnn.N_MELS)).astype(np.float32)
    want = embedding.keras_runner(model)(X)
    got = embedding.onnx_runner(onnx_path)(X)
    if sorted(got) != sorted(want):
        raise ArtifactError(f"{onnx_path}: ONNX outputs {sorted(got)} differ from the Keras outputs {sorted(want)}")
    diffs = {k: float(np.max(np.abs(np.asarray(got[k]) - want[k]))) for k in sorted(want)}
    bad = {k: v for k, v in diffs.items() if not v <= ONNX_ATOL}
    if bad:
        raise ArtifactError(f"{onnx_path}: ONNX differs from Keras by {bad} (> {ONNX_ATOL})")
    return diffs


def save_backbone(name: str, out_dir: str | Path, *, onnx: bool | None = None) -> Path:
    """Write the pretrained tagger ``name`` to ``out_dir`` (replaced atomically) and return it.

    Files: ``model.keras`` (outputs :data:`musicnn.OUTPUTS`, loads with ``safe_mode=True``),
    ``model.json`` (card: name, kind ``"pretrained"``, source checkpoint files + sha256, licence
    notice, citation, tag vocabulary, front end, outputs, hashes) and ``model.onnx`` through
    ``mgr.models.export.export_keras``. ``onnx=None`` writes the ONNX file when that exporter
    is importable (the card then says why not in ``onnx_skipped``), ``True`` requires it,
    ``False`` skips it.
    """
    import datetime as _dt

    name = musicnn.canonical_name(name)
    art = musicnn.ARTIFACT_NAMES[name]
    out_dir = Path(out_dir)
    export_keras = None
    skipped = None
    if onnx is not False:
        try:
            from mgr.models.export import export_keras  # type: ignore[no-redef]
        except ImportError as e:
            if onnx:
                raise
            skipped = f"mgr.models.export.export_keras is not available ({e})"
    else:
        skipped = "not requested"
    model = musicnn.build_musicnn(name)
    card: dict[str, Any] = {
        "name": art,
        "kind": "pretrained",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions("keras", "tensorflow", "numpy", "musicnn"),
        **musicnn.provenance(name),
        "labels": musicnn.tag_vocab(name),
        "tag_vocab": musicnn.tag_vocab(name),
        "frontend": dict(musicnn.FRONTEND),
        "input_shape": [musicnn.PATCH_FRAMES, musicnn.N_MELS],
        "window_frames": musicnn.PATCH_FRAMES,
        "outputs": list(musicnn.OUTPUTS),
        "output_shapes": {"taggram": [musicnn.N_TAGS], "penultimate": [musicnn.PENULTIMATE], "mean_pool": [musicnn.POOLED],
                          "max_pool": [musicnn.POOLED]},
        "embedding": {"output": "penultimate", "pooling": ["mean", "max"], "dim": musicnn.EMBEDDING_DIM,
                      "names_prefix": art},
        "model_file": "model.keras",
    }
    with atomic_path(out_dir, is_dir=True) as tmp:
        keras_path = tmp / "model.keras"
        model.save(keras_path)
        card["model_sha256"] = file_hash(keras_path)
        if export_keras is not None:
            onnx_path = tmp / "model.onnx"
            export_keras(model, onnx_path)
            card["onnx_file"] = "model.onnx"
            card["onnx_sha256"] = file_hash(onnx_path)
            card["onnx_max_abs_diff"] = _onnx_parity(model, onnx_path)
        else:
            card["onnx_skipped"] = skipped
        write_json(tmp / "model.json", card)
    return out_dir


if __name__ == "__main__":  # python -m mgr.pretrained.builtin <backbone> <out_dir>: the one-off build
    save_backbone(sys.argv[1], sys.argv[2], onnx=True)
