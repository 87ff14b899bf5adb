"""musicnn embeddings: runners (a Keras model or its ONNX export on onnxruntime) and the track
embedding — mean and max over 3 s patches of the penultimate layer (400 values,
:func:`mgr.pretrained.musicnn.embedding_names`), the ``musicnn_msd`` / ``musicnn_mtt`` feature sets —
and, from the same forward pass, the track taggram: the mean over patches of the 50 sigmoid tag
scores (:func:`tag_names`), the ``musicnn_msd_tags`` / ``musicnn_mtt_tags`` feature sets
(:func:`track_features` returns both). onnxruntime is imported inside :func:`onnx_runner`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mgr.pretrained import musicnn

Runner = Callable[[np.ndarray], dict]


def keras_runner(model: Any, batch_size: int = 64) -> Runner:
    """``run(X) -> {output: array}`` for a model from :func:`build_musicnn` (inference mode)."""
    names = list(model.output_names) if isinstance(model.output, dict) else None

    def run(X: np.ndarray) -> dict[str, np.ndarray]:
        X = np.asarray(X, dtype=np.float32)
        parts: list[dict[str, np.ndarray]] = []
        for s in range(0, len(X), batch_size):
            r = model.predict_on_batch(X[s : s + batch_size])
            if not isinstance(r, dict):
                r = dict(zip(names, r)) if names and isinstance(r, (list, tuple)) else {"output": r}
            parts.append({k: np.asarray(v) for k, v in r.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    return run


def onnx_runner(path: str | Path, threads: int = 1) -> Runner:
    """``run(X) -> {output: array}`` through onnxruntime (CPU, ``threads`` intra-op threads)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]

    def run(X: np.ndarray) -> dict[str, np.ndarray]:
        res = sess.run(out_names, {in_name: np.ascontiguousarray(X, dtype=np.float32)})
        return dict(zip(out_names, res))

    return run


def embed_patches(run: Runner, patch_batch: np.ndarray) -> np.ndarray:
    """``(n, 200)`` float32 penultimate-layer embeddings of ``(n, 187, 96)`` patches."""
    X = np.asarray(patch_batch, dtype=np.float32)
    if X.ndim != 3 or X.shape[1:] != (musicnn.PATCH_FRAMES, musicnn.N_MELS):
        raise ValueError(f"embed_patches: expected (n, {musicnn.PATCH_FRAMES}, {musicnn.N_MELS}) patches, got {X.shape}")
    if len(X) == 0:
        return np.zeros((0, musicnn.PENULTIMATE), np.float32)
    out = run(X)
    pen = np.asarray(out["penultimate"], dtype=np.float32)
    if pen.shape != (len(X), musicnn.PENULTIMATE):
        raise ValueError(f"embed_patches: run returned penultimate of shape {pen.shape}")
    return pen


def tag_names(name: str) -> list[str]:
    """Column names of the taggram feature set of backbone ``name`` (``musicnn_msd``):
    ``musicnn_msd_tags_00_rock`` ... -- the output index, then the tag in lower case with every
    run of other characters as ``_`` (``Hip-Hop`` -> ``hip_hop``), in taggram order."""
    import re

    art = musicnn.ARTIFACT_NAMES[musicnn.canonical_name(name)]
    return [f"{art}_tags_{i:02d}_{re.sub(r'[^a-z0-9]+', '_', t.lower()).strip('_')}"
            for i, t in enumerate(musicnn.tag_vocab(name))]


def track_features(run: Runner, y16k: np.ndarray, hop: int | None = None,
                   pad_mode: str = "reflect") -> dict[str, np.ndarray]:
    """One forward pass over the patches of a mono 16 kHz signal (see :func:`track_embedding`):
    ``{"embedding": (400,) mean then max of the penultimate layer, "tags": (50,) mean taggram}``."""
    X = np.asarray(musicnn.patches(musicnn.logmel(y16k, pad_mode), hop), dtype=np.float32)
    out = run(X)
    pen = np.asarray(out["penultimate"], dtype=np.float32)
    tags = np.asarray(out["taggram"], dtype=np.float32)
    if pen.shape != (len(X), musicnn.PENULTIMATE) or tags.shape != (len(X), musicnn.N_TAGS):
        raise ValueError(f"track_features: run returned penultimate {pen.shape}, taggram {tags.shape}")
    return {"embedding": np.concatenate([pen.mean(axis=0), pen.max(axis=0)]).astype(np.float32),
            "tags": tags.mean(axis=0).astype(np.float32)}


def track_embedding(run: Runner, y16k: np.ndarray, hop: int | None = None, pad_mode: str = "reflect") -> np.ndarray:
    """``(400,)`` float32 track embedding of a mono 16 kHz signal: the mean then the max over
    its patches (:func:`mgr.pretrained.musicnn.patches` with ``hop``; a clip under 3 s is repeat-padded to one patch)
    of the penultimate layer (``pad_mode``: see :func:`mgr.pretrained.musicnn.logmel`). Column names:
    :func:`embedding_names`."""
    E = embed_patches(run, musicnn.patches(musicnn.logmel(y16k, pad_mode), hop))
    return np.concatenate([E.mean(axis=0), E.max(axis=0)]).astype(np.float32)
