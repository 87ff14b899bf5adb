"""The training input pipeline: per-track targets and weights, augmentation, the window feeder
and the validation windows (the protocol is in :mod:`mgr.models.training`'s docstring).

- :func:`make_targets`: one-hot genre (+ tempo class, multi-hot tags) per track and per-output
  sample weights (class weights ``n / (n_classes * count)`` over train tracks for the genre; 0 for
  tracks without a reference tempo).
- :func:`window_feeder`: a ``keras.utils.PyDataset`` drawing fresh random train windows every
  batch, seeded by ``(seed, epoch, batch)``; optional SpecAugment-style masks and mixup.
- :func:`val_windows`: evenly spaced windows of each validation track.

Keras is imported when the first feeder is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mgr.errors import DataError
from mgr.models.deep import bpm_to_class, tempo_bins


@dataclass
class Targets:
    """Per-track targets and sample weights for every output the model has."""

    y: dict[str, np.ndarray]  # output -> (n_tracks, n_units) float32
    w: dict[str, np.ndarray]  # output -> (n_tracks,) float32 training sample weights
    w_val: dict[str, np.ndarray]  # output -> (n_tracks,) float32 (no class weighting)
    tempo_bins: dict | None
    class_weights: list[float]

    @property
    def outputs(self) -> list[str]:
        return list(self.y)


def has_tempo(store: Any, indices: np.ndarray) -> bool:
    t = np.asarray(store.tempo_bpm, dtype=float)[indices]
    return bool(np.isfinite(t).any())


def make_targets(store: Any, train_idx: np.ndarray, tp: Any, *, tempo: bool, tags: bool) -> Targets:
    """One-hot genre (+ tempo classes, + tags) per track and the weights that go with them."""

    labels = list(store.labels)
    g = np.asarray(store.genre_idx, dtype=np.int64)
    n_tracks, n_classes = g.size, len(labels)
    y = {"genre": np.eye(n_classes, dtype=np.float32)[g]}
    counts = np.bincount(g[train_idx], minlength=n_classes).astype(float)
    if tp.class_weights:
        cw = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    else:
        cw = np.ones(n_classes)
    w = {"genre": cw[g].astype(np.float32)}
    w_val = {"genre": np.ones(n_tracks, np.float32)}
    bins = None
    if tempo:
        bins = tempo_bins(tp.tempo_bins, tp.tempo_min_bpm, tp.tempo_max_bpm, tp.tempo_n_log_bins)
        cls = bpm_to_class(np.asarray(store.tempo_bpm, dtype=float), bins["edges"])
        k = len(bins["centres"])
        yt = np.zeros((n_tracks, k), np.float32)
        known = cls >= 0
        yt[np.flatnonzero(known), cls[known]] = 1.0
        y["tempo"] = yt
        w["tempo"] = w_val["tempo"] = known.astype(np.float32)
    if tags:
        y["tags"] = np.asarray(store.tags, dtype=np.float32)
        w["tags"] = w_val["tags"] = np.ones(n_tracks, np.float32)
    return Targets(y=y, w=w, w_val=w_val, tempo_bins=bins, class_weights=[float(c) for c in cw])


def spec_augment(X: np.ndarray, rng: np.random.Generator, fill: np.ndarray, n_masks: int = 2) -> np.ndarray:
    """SpecAugment-style masking in place: ``n_masks`` band masks (<= n_mels/8 wide) and
    ``n_masks`` time masks (<= frames/10 wide) per window, filled with the per-band ``fill``."""
    n, n_mels, frames = X.shape[:3]
    F, T = max(1, n_mels // 8), max(1, frames // 10)
    fill = np.asarray(fill, dtype=X.dtype).reshape(n_mels, 1)
    for i in range(n):
        for _ in range(n_masks):
            f = int(rng.integers(0, F + 1))
            if f:
                f0 = int(rng.integers(0, n_mels - f + 1))
                X[i, f0 : f0 + f, :] = fill[f0 : f0 + f]
            t = int(rng.integers(0, T + 1))
            if t:
                t0 = int(rng.integers(0, frames - t + 1))
                X[i, :, t0 : t0 + t] = fill
    return X


def mixup(X, y: dict, w: dict, rng: np.random.Generator, alpha: float):
    """Per-sample mixup with a random partner in the batch; lam ~ Beta(alpha, alpha)."""
    n = X.shape[0]
    lam = rng.beta(alpha, alpha, size=n).astype(np.float32)
    lam = np.maximum(lam, 1 - lam)  # the sample keeps its identity (dominant label)
    perm = rng.permutation(n)
    lx = lam.reshape((n,) + (1,) * (X.ndim - 1))
    X = lx * X + (1 - lx) * X[perm]
    y = {k: lam[:, None] * v + (1 - lam[:, None]) * v[perm] for k, v in y.items()}
    w = {k: lam * v + (1 - lam) * v[perm] for k, v in w.items()}
    return X, y, w


_FEEDER_CLS = None


def _feeder_class():
    """Define the PyDataset subclass on first use (keeps Keras out of import time)."""
    global _FEEDER_CLS
    if _FEEDER_CLS is not None:
        return _FEEDER_CLS
    import keras

    class WindowFeeder(keras.utils.PyDataset):
        """Random train windows, a fresh draw every epoch; yields ``(X, y, sample_weight)``."""

        def __init__(
            self,
            store,
            indices,
            *,
            window_frames: int,
            batch_size: int,
            steps: int,
            targets: Targets | None = None,
            fill: np.ndarray | None = None,
            specaugment: bool = False,
            mixup_alpha: float = 0.0,
            seed: int = 0,
            workers: int = 1,
        ):
            super().__init__(workers=max(1, int(workers)), use_multiprocessing=False)
            self.store = store
            self.indices = np.asarray(indices, dtype=np.int64)
            if self.indices.size == 0:
                raise DataError("the feeder got no tracks to draw windows from")
            self.window_frames = int(window_frames)
            self.batch_size = int(batch_size)
            self.steps = int(steps)
            self.targets = targets
            self.fill = fill
            self.specaugment = bool(specaugment)
            self.mixup_alpha = float(mixup_alpha)
            self.seed = int(seed)
            self.epoch = 0
            self.last_track_index: np.ndarray | None = None

        def __len__(self) -> int:
            return self.steps

        def draw(self, idx: int):
            """Raw windows and their track indices for batch ``idx`` of the current epoch."""
            rng = np.random.default_rng([self.seed, self.epoch, int(idx)])
            X, tidx = self.store.random_windows(self.indices, self.batch_size, self.window_frames, rng)
            return np.asarray(X, dtype=np.float32), np.asarray(tidx, dtype=np.int64), rng

        def __getitem__(self, idx: int):
            if idx >= self.steps:
                raise IndexError(idx)
            X, tidx, rng = self.draw(idx)
            self.last_track_index = tidx
            if self.specaugment:
                fill = self.fill if self.fill is not None else np.zeros(X.shape[1], np.float32)
                X = spec_augment(X.copy(), rng, fill)
            X = X[..., None]
            if self.targets is None:
                return X
            y = {k: v[tidx] for k, v in self.targets.y.items()}
            w = {k: v[tidx] for k, v in self.targets.w.items()}
            if self.mixup_alpha > 0:
                X, y, w = mixup(X, y, w, rng, self.mixup_alpha)
            return X, y, w

        def on_epoch_end(self) -> None:
            self.epoch += 1

    _FEEDER_CLS = WindowFeeder
    return WindowFeeder


def window_feeder(store, indices, **kwargs):
    """A :class:`WindowFeeder` (``keras.utils.PyDataset``) over ``indices``; see the module doc."""
    return _feeder_class()(store, indices, **kwargs)


def val_windows(store, indices: np.ndarray, window_frames: int, max_per_track: int, overlap: float = 0.5):
    """Evenly spaced windows of each val track: ``(X[n, n_mels, frames], track_index[n])``."""
    xs, ts = [], []
    for i in np.asarray(indices, dtype=np.int64):
        W = np.asarray(store.track_windows(int(i), window_frames, overlap), dtype=np.float32)
        if len(W) > max_per_track:
            W = W[np.unique(np.linspace(0, len(W) - 1, max_per_track).round().astype(int))]
        xs.append(W)
        ts.append(np.full(len(W), i, dtype=np.int64))
    if not xs:
        return None, None
    return np.concatenate(xs), np.concatenate(ts)
