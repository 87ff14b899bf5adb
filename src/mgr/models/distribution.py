"""What a model was trained on, as numbers: the out-of-distribution check of ``mgr predict``.

At train time each model records, in its card (``card["distribution"]``, plain JSON numbers),
the per-dimension mean and standard deviation of its *input description* over its training
tracks, and a threshold on the **standardised distance** of a track from them:

* classical models: the feature vector itself (the ``feature_columns`` the model reads);
* deep models: the per-mel-band mean and standard deviation over time of the track's log-mel
  input (``2 * n_mels`` numbers, :func:`band_stats`; predict accumulates the same sums while it
  streams the frames).

The score of a track is the root-mean-square z-score over the dimensions, each ``|z|`` capped at
:data:`Z_CAP` so that one absurd feature cannot decide alone: ``sqrt(mean(min(|x - mu| / sd,
Z_CAP)^2))``. A training track scores about 1; the threshold is :data:`MARGIN` times the
:data:`QUANTILE` of the scores of the training tracks and (when there are at least
:data:`MIN_VAL` of them) the validation tracks, which are unseen. An input scoring above it is
``in_distribution: false``: the model is being asked about audio unlike anything it learned
from, and its probabilities do not mean what they meant on the test set.

This is a diagonal Mahalanobis distance (covariances are not kept: with a few hundred training
tracks and 57-518 dimensions a full covariance is not estimable), the simple and robust
baseline for feature-space novelty detection (e.g. Lee et al. 2018 use the Mahalanobis distance
of the penultimate features). It cannot tell *why* a track is foreign.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mgr.errors import ArtifactError

#: threshold = MARGIN x this quantile of the reference (train + val) tracks' own scores
QUANTILE = 0.99
MARGIN = 1.5
#: validation tracks join the reference scores when there are at least this many
MIN_VAL = 10
#: each dimension's |z| is capped here (one broken feature cannot decide alone)
Z_CAP = 20.0
#: standard deviations are floored at this fraction of the mean standard deviation (a feature
#: constant in training would otherwise make any change infinitely far)
SD_FLOOR = 0.05
VERSION = 1


def _z(mean: np.ndarray, sd: np.ndarray, X: np.ndarray) -> np.ndarray:
    return np.minimum(np.abs((np.asarray(X, np.float64) - mean) / sd), Z_CAP)


def _scores(mean: np.ndarray, sd: np.ndarray, X: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(_z(mean, sd, np.atleast_2d(X))), axis=1))


def fit(X_train: np.ndarray, X_val: np.ndarray | None = None, *, kind: str) -> dict[str, Any]:
    """The card record of a training distribution: ``X_train`` (tracks x dims) and optional
    validation rows (:data:`MIN_VAL` or more are used for the threshold). ``kind``:
    ``features`` or ``logmel_band_stats``."""
    X = np.asarray(X_train, np.float64)
    if X.ndim != 2 or len(X) < 2 or not np.isfinite(X).all():
        raise ValueError("distribution.fit needs a finite (tracks x dims) matrix with at least 2 rows")
    mean = X.mean(axis=0)
    sd = X.std(axis=0)
    sd = np.maximum(sd, SD_FLOOR * float(sd.mean()) + 1e-12)
    ref = _scores(mean, sd, X)
    n_val = 0
    if X_val is not None and len(X_val) >= MIN_VAL and np.isfinite(X_val).all():
        ref = np.concatenate([ref, _scores(mean, sd, X_val)])
        n_val = len(X_val)
    q = float(np.quantile(ref, QUANTILE))
    return {
        "version": VERSION,
        "kind": kind,
        "score": "rms_capped_z",
        "mean": [float(v) for v in mean],
        "sd": [float(v) for v in sd],
        "z_cap": Z_CAP,
        "reference_quantile": QUANTILE,
        "reference_score_at_quantile": round(q, 6),
        "margin": MARGIN,
        "threshold": round(MARGIN * q, 6),
        "n_train": int(len(X)),
        "n_val": int(n_val),
    }


class Distribution:
    """A card's ``distribution`` record, checked (one-line :class:`ArtifactError` if malformed)."""

    def __init__(self, record: Any, where: str = "model card"):
        try:
            if not isinstance(record, dict) or record.get("version") != VERSION:
                raise ValueError("unknown version")
            self.kind = str(record["kind"])
            self.mean = np.asarray(record["mean"], np.float64)
            self.sd = np.asarray(record["sd"], np.float64)
            self.threshold = float(record["threshold"])
            self.z_cap = float(record.get("z_cap", Z_CAP))
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{where}: distribution record is malformed ({e})") from None
        if (self.mean.ndim != 1 or self.mean.shape != self.sd.shape or not np.isfinite(self.mean).all()
                or not np.isfinite(self.sd).all() or (self.sd <= 0).any() or not math.isfinite(self.threshold)
                or self.threshold <= 0):
            raise ArtifactError(f"{where}: distribution record is malformed (mean/sd/threshold)")

    @property
    def dims(self) -> int:
        return int(self.mean.shape[0])

    def score(self, x: np.ndarray) -> float:
        x = np.asarray(x, np.float64).reshape(-1)
        if x.shape[0] != self.dims:
            raise ArtifactError(f"distribution record has {self.dims} dimensions, the input {x.shape[0]}")
        if not np.isfinite(x).all():
            return float("inf")
        z = np.minimum(np.abs((x - self.mean) / self.sd), self.z_cap)
        return float(np.sqrt(np.mean(np.square(z))))

    def check(self, x: np.ndarray) -> tuple[bool, float]:
        """``(in_distribution, score)`` of one track's description ``x``."""
        s = self.score(x)
        return s <= self.threshold, s


def band_stats(frames_sum: np.ndarray, frames_sumsq: np.ndarray, n: int) -> np.ndarray:
    """A track's per-band mean and standard deviation over time (``2 * n_bands``) from the sums
    of its log-mel frames and of their squares (what predict accumulates while streaming)."""
    n = max(int(n), 1)
    mean = np.asarray(frames_sum, np.float64) / n
    var = np.maximum(np.asarray(frames_sumsq, np.float64) / n - mean ** 2, 0.0)
    return np.concatenate([mean, np.sqrt(var)])


def track_band_stats(spec: np.ndarray) -> np.ndarray:
    """:func:`band_stats` of one ``(n_mels, frames)`` spectrogram (training side)."""
    S = np.asarray(spec, np.float64)
    return band_stats(S.sum(axis=1), np.square(S).sum(axis=1), S.shape[1])


def store_distribution(store: Any, train_idx: np.ndarray, val_idx: np.ndarray | None = None) -> dict[str, Any]:
    """:func:`fit` of the per-band log-mel statistics (:func:`track_band_stats`) of a spectrogram
    store's training (and validation) tracks: a deep model's card record."""
    tr = np.stack([track_band_stats(store.track(int(i))) for i in train_idx])
    va = np.stack([track_band_stats(store.track(int(i))) for i in val_idx]) if val_idx is not None and len(val_idx) else None
    return fit(tr, va, kind="logmel_band_stats")
