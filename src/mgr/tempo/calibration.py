"""Tempo confidence that means something: the learned estimator's raw confidence (its posterior
mass within +-4 % of the answer, :func:`mgr.tempo.features.readout`) mapped to the probability
that the answer is right (Acc1: within 4 % of the true tempo).

The map is fitted at train time (``train-tempo``) on the ``calib`` clips of
:mod:`mgr.tempo.dataset` (train styles; in turn real-music feels at real music's tempi, plain
plans and metronomes with subdivision clicks; neither trained on nor used to stop training: the
validation set that stopped training flatters the model, and one without strong subdivisions
never shows it its confident octave errors) by isotonic regression
(pool-adjacent-violators: the monotone step function closest to the 0/1 outcomes), read as the
**lower** bound of a one-sided :data:`LOWER_Z` Wilson interval of each block's accuracy (so a
small block cannot claim much), made monotone again, and stored in the tempo card as knots
(``confidence_calibration``: plain JSON numbers). Predict interpolates between them
(:func:`apply`). By construction, on the fitting set the answers whose calibrated confidence is
at least ``c`` are right at least ``c`` of the time; :func:`reliability` measures the same on the
held-out sets, and ``tests/test_tempo_calibration.py`` checks it.

Below :data:`MIN_CONFIDENCE` (calibrated) predict reports no tempo (``tempo_bpm: null``, with a
``tempo_error`` saying why): such an answer is more often wrong than right.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mgr.errors import ArtifactError

#: calibrated confidence under which predict reports no tempo
MIN_CONFIDENCE = 0.5
#: one-sided z of the Wilson lower bound per isotonic block (1.0: ~84 % one-sided)
LOWER_Z = 1.0
#: Acc1 tolerance (the MIREX / Gouyon et al. 2006 Acc1: within 4 % of the reference)
ACC1_TOL = 0.04
VERSION = 1


def correct_acc1(est: np.ndarray, ref: np.ndarray, tol: float = ACC1_TOL) -> np.ndarray:
    """Whether each estimate is within ``tol`` of its reference (Acc1)."""
    est, ref = np.asarray(est, np.float64), np.asarray(ref, np.float64)
    return np.abs(est - ref) <= tol * ref


def _pava(y: np.ndarray) -> list[tuple[int, int, float]]:
    """Pool-adjacent-violators on ``y`` (already ordered by the score): blocks ``(start, end, mean)``
    whose means are non-decreasing."""
    blocks: list[list[float]] = []  # [start, end, sum, count]
    for i, v in enumerate(y):
        blocks.append([i, i + 1, float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][2] / blocks[-2][3] > blocks[-1][2] / blocks[-1][3]:
            b = blocks.pop()
            blocks[-1][1], blocks[-1][2], blocks[-1][3] = b[1], blocks[-1][2] + b[2], blocks[-1][3] + b[3]
    return [(int(a), int(b), s / n) for a, b, s, n in blocks]


def _wilson_lower(p: float, n: float, z: float = LOWER_Z) -> float:
    if n <= 0:
        return 0.0
    den = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0))
    return max(0.0, (centre - margin) / den)


def fit(raw: np.ndarray, correct: np.ndarray, fitted_on: str = "validation") -> dict[str, Any]:
    """The card record mapping raw confidences to calibrated ones, from the answers on one set
    (named ``fitted_on`` in the record)."""
    raw = np.asarray(raw, np.float64)
    correct = np.asarray(correct, bool)
    if raw.shape != correct.shape or raw.ndim != 1 or len(raw) < 2 or not np.isfinite(raw).all():
        raise ValueError("tempo calibration needs matching 1-D raw confidences and outcomes (2 or more)")
    order = np.argsort(raw, kind="stable")
    xs, ys = raw[order], correct[order].astype(np.float64)
    knots_x, knots_y = [], []
    for a, b, mean in _pava(ys):
        knots_x.append(float(np.mean(xs[a:b])))  # the block's centre
        knots_y.append(_wilson_lower(mean, b - a))
    knots_y = list(np.maximum.accumulate(knots_y))  # monotone again after the lower bounds
    # a run of equal values needs only its two ends (the interpolation is the same)
    keep = [i for i in range(len(knots_y)) if i in (0, len(knots_y) - 1)
            or knots_y[i] != knots_y[i - 1] or knots_y[i] != knots_y[i + 1]]
    knots_x, knots_y = [knots_x[i] for i in keep], [knots_y[i] for i in keep]
    return {
        "version": VERSION,
        "method": f"isotonic regression of Acc1 correctness on the raw confidence ({fitted_on} set), "
                  f"each block's Wilson lower bound (z={LOWER_Z:g}), interpolated between block centres",
        "x": [round(v, 6) for v in knots_x],
        "y": [round(float(v), 6) for v in knots_y],
        "n": int(len(raw)),
        "min_confidence": MIN_CONFIDENCE,
    }


def check(record: Any, where: str = "tempo card") -> dict[str, Any]:
    """``record`` checked: matching non-empty finite knots, ``x`` non-decreasing, ``y`` in [0, 1]
    and non-decreasing (one-line :class:`ArtifactError` otherwise)."""
    try:
        x = np.asarray(record["x"], np.float64)
        y = np.asarray(record["y"], np.float64)
        ok = (record.get("version") == VERSION and x.ndim == 1 and x.shape == y.shape and len(x) >= 1
              and np.isfinite(x).all() and np.isfinite(y).all() and (np.diff(x) >= 0).all()
              and (np.diff(y) >= 0).all() and (y >= 0).all() and (y <= 1).all())
    except (KeyError, TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise ArtifactError(f"{where}: confidence_calibration is malformed")
    return record


def apply(record: dict[str, Any] | None, raw: np.ndarray | float) -> np.ndarray:
    """Calibrated confidences of raw ones (``record`` ``None``: unchanged)."""
    r = np.asarray(raw, np.float64)
    if record is None:
        return r
    return np.interp(r, np.asarray(record["x"], np.float64), np.asarray(record["y"], np.float64))


def reliability(conf: np.ndarray, correct: np.ndarray, levels: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)) -> dict:
    """For each level ``c``: the share of answers with confidence >= c and their Acc1 (``None``
    when there are none); ``holds``: Acc1 >= c wherever answers exist."""
    conf, correct = np.asarray(conf, np.float64), np.asarray(correct, bool)
    out: dict[str, Any] = {"n": int(len(conf)), "levels": {}}
    holds = True
    for c in levels:
        m = conf >= c
        acc = float(correct[m].mean()) if m.any() else None
        out["levels"][f"{c:g}"] = {"share": round(float(m.mean()), 4) if len(m) else 0.0,
                                   "acc1": None if acc is None else round(acc, 4)}
        holds &= acc is None or acc >= c
    out["holds"] = bool(holds)
    return out


def calibrate(predict: Any, sets: dict[str, tuple[np.ndarray, np.ndarray]], fit_on: str = "validation",
              ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Fit the map on ``sets[fit_on]`` and measure its :func:`reliability` on every set.

    ``predict(X) -> (bpm, raw confidence)``; ``sets``: name -> (features, true BPM). Returns the
    card record (``None`` without a ``fit_on`` set) and ``{set: reliability}``."""
    raw = {k: predict(X) for k, (X, _) in sets.items() if len(X)}
    ok = {k: correct_acc1(raw[k][0], sets[k][1]) for k in raw}
    if fit_on not in raw or len(raw[fit_on][1]) < 2:
        return None, {}
    record = fit(raw[fit_on][1], ok[fit_on], fitted_on=fit_on)
    return record, {k: reliability(apply(record, raw[k][1]), ok[k]) for k in raw}
