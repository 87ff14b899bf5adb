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
Z_CAP)^2))``, where a dimension positive in every training track (an energy, a variance, a
bandwidth: heavy-tailed) is compared on a log scale (``log_dims``), so that a value ten times
too small is as foreign as one ten times too large. A training track scores about 1; the threshold is :data:`MARGIN` times the
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

from mgr.dsp import portable
from mgr.errors import ArtifactError

#: threshold = MARGIN x this quantile of the reference (train + val) tracks' own scores
QUANTILE = 0.99
MARGIN = 1.25
#: validation tracks join the reference scores when there are at least this many
MIN_VAL = 10
#: each dimension's |z| is capped here (one broken feature cannot decide alone)
Z_CAP = 20.0
#: each dimension's standard deviation is floored at this fraction of its mean's magnitude (a
#: feature constant in training would otherwise make any change infinitely far)
SD_FLOOR = 0.01
#: values of a log dimension are floored here before the log
LOG_FLOOR = 1e-12
VERSION = 1


def _logged(X: np.ndarray, log_dims: np.ndarray) -> np.ndarray:
    """``X`` with the dimensions in ``log_dims`` (positive in every training track: energies,
    variances, bandwidths, heavy-tailed) on a log scale, where "ten times smaller" is as far as
    "ten times larger"."""
    Y = np.array(X, np.float64, ndmin=2)
    if log_dims.any():
        Y[:, log_dims] = portable.log(np.maximum(Y[:, log_dims], LOG_FLOOR))  # the same bits on every machine
    return Y


def _scores(mean: np.ndarray, sd: np.ndarray, log_dims: np.ndarray, X: np.ndarray) -> np.ndarray:
    z = np.minimum(np.abs((_logged(X, log_dims) - mean) / sd), Z_CAP)
    return np.sqrt(np.mean(np.square(z), axis=1))


def fit(X_train: np.ndarray, X_val: np.ndarray | None = None, *, kind: str) -> dict[str, Any]:
    """The card record of a training distribution: ``X_train`` (tracks x dims) and optional
    validation rows (:data:`MIN_VAL` or more are used for the threshold). ``kind``:
    ``features`` or ``logmel_band_stats``."""
    X = np.asarray(X_train, np.float64)
    if X.ndim != 2 or len(X) < 2 or not np.isfinite(X).all():
        raise ValueError("distribution.fit needs a finite (tracks x dims) matrix with at least 2 rows")
    log_dims = (X > 0).all(axis=0)
    L = _logged(X, log_dims)
    mean = L.mean(axis=0)
    sd = L.std(axis=0)
    sd = np.maximum(sd, SD_FLOOR * np.abs(mean) + 1e-6)  # per dimension: the features' scales differ a lot
    ref = _scores(mean, sd, log_dims, X)
    n_val = 0
    if X_val is not None and len(X_val) >= MIN_VAL and np.isfinite(X_val).all():
        ref = np.concatenate([ref, _scores(mean, sd, log_dims, X_val)])
        n_val = len(X_val)
    q = float(np.quantile(ref, QUANTILE))
    return {
        "version": VERSION,
        "kind": kind,
        "score": "rms_capped_z",
        "log_dims": [int(i) for i in np.flatnonzero(log_dims)],
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
            idx = np.asarray(record.get("log_dims", []), np.int64)
            self.log_dims = np.zeros(self.mean.shape[0], bool)
            self.log_dims[idx] = True
        except (KeyError, TypeError, ValueError, IndexError) as e:
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
        z = np.minimum(np.abs((_logged(x, self.log_dims)[0] - self.mean) / self.sd), self.z_cap)
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
