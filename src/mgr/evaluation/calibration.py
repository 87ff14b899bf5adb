"""Temperature scaling of class probabilities (Guo et al., "On calibration of modern neural
networks", ICML 2017), fitted on validation data at train time and stored in the model card.

A temperature ``T`` turns probabilities ``p`` into ``softmax(log p / T)``: ``T > 1`` softens
over-confident outputs, ``T < 1`` sharpens under-confident ones; the ranking of the classes, hence
accuracy and top-k, is unchanged. :func:`fit_temperature` picks ``T`` minimising the negative
log-likelihood of the **track-level** answers (the mean of a track's tempered window
probabilities, as evaluate and ``mgr predict`` aggregate them) over a log-spaced grid, so it is
deterministic and cannot diverge on a handful of validation tracks. :func:`expected_calibration_error`
(top-label ECE, equal-width confidence bins) and :func:`brier_score` are the calibration metrics
evaluate reports. NumPy only (a leaf: the deep artifact, training and evaluation import it).
"""

from __future__ import annotations

import numpy as np

from mgr.dsp import portable

GRID = portable.exp(np.linspace(float(portable.log(0.05)), float(portable.log(20.0)), 241))  # T from 0.05 to 20, ~2.5 % steps
EPS = 1e-12
ECE_BINS = 15


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` along the last axis (float64 in, float64 out)."""
    p = np.asarray(probs, dtype=np.float64)
    if temperature == 1.0:
        return p
    z = portable.log(np.clip(p, EPS, None)) / float(temperature)  # the same bits on every machine
    z -= z.max(axis=-1, keepdims=True)
    e = portable.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _track_mean(p: np.ndarray, track_index: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    if track_index is None:
        return p, None
    tracks, inv = np.unique(np.asarray(track_index), return_inverse=True)
    sums = np.zeros((len(tracks), p.shape[1]))
    np.add.at(sums, inv, p)
    return sums / np.bincount(inv)[:, None], tracks


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    p = np.asarray(probs, dtype=np.float64)
    return float(-np.mean(portable.log(np.clip(p[np.arange(len(y)), np.asarray(y)], EPS, None))))


def fit_temperature(probs: np.ndarray, y: np.ndarray, track_index: np.ndarray | None = None) -> float:
    """The grid temperature with the lowest NLL of the (track-mean) tempered probabilities.

    ``probs``: ``(n, C)`` window (or row) probabilities; ``track_index``: the track of each row
    (None: rows are tracks); ``y``: the true class of each track, in ``np.unique(track_index)``
    order (of each row when ``track_index`` is None). Ties -> the temperature closest to 1."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if p.ndim != 2 or len(p) == 0 or len(y) == 0:
        return 1.0
    losses = np.array([nll(_track_mean(apply_temperature(p, t), track_index)[0], y) for t in GRID])
    best = np.flatnonzero(losses <= losses.min() + 1e-12)
    return float(GRID[best[np.argmin(np.abs(portable.log(GRID[best])))]])


def _pair(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or p.shape[0] != t.size:
        raise ValueError(f"probs must be (n, n_classes) with n = {t.size}, got {p.shape}")
    return t, p


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error (Guo et al. 2017).

    Each row's confidence is its highest probability and it counts as correct when that class
    (ties -> lower index) is the true one. Rows go into ``n_bins`` equal-width confidence bins
    ``(i/n, (i+1)/n]`` (a confidence of 0 into the first); ECE = sum over bins of
    ``n_bin / n * |accuracy_bin - mean confidence_bin|``. 0 = calibrated; NaN without rows.
    """
    t, p = _pair(y_true, probs)
    if not t.size:
        return float("nan")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == t).astype(float)
    b = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece = 0.0
    for i in range(n_bins):
        m = b == i
        if m.any():
            ece += m.sum() / t.size * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def brier_score(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Multiclass Brier score: mean over rows of ``sum_k (p_k - [k == y])^2`` (0 best, 2 worst)."""
    t, p = _pair(y_true, probs)
    if not t.size:
        return float("nan")
    onehot = np.zeros_like(p)
    onehot[np.arange(t.size), t] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def calibration_record(probs: np.ndarray, y: np.ndarray, track_index: np.ndarray | None = None) -> dict:
    """Fit ``T`` and describe it for the card: ``{temperature, fitted_on, n, nll/ece before and after}``."""
    t = fit_temperature(probs, y, track_index)
    before = _track_mean(np.asarray(probs, dtype=np.float64), track_index)[0]
    after = _track_mean(apply_temperature(probs, t), track_index)[0]
    return {
        "method": "temperature scaling (track-level NLL on the validation tracks)",
        "temperature": round(t, 6),
        "n_val_tracks": int(len(y)),
        "val_nll_before": round(nll(before, y), 6), "val_nll_after": round(nll(after, y), 6),
        "val_ece_before": round(expected_calibration_error(y, before), 6),
        "val_ece_after": round(expected_calibration_error(y, after), 6),
    }
