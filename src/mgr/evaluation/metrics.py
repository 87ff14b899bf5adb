"""Metrics: pure functions of NumPy arrays, the one definition of every number mgr reports.

Everything here is a pure function of numpy arrays (numpy only at import time), so the
train-ml / train-dl stages use the same functions for their validation metrics as the
evaluate stage does for test metrics.

Conventions
-----------
* Labels are integer class indices ``0..n_classes-1`` (index into a model card's ``labels``).
* ``probs`` are ``(n, n_classes)`` arrays of class probabilities (rows need not sum to 1).
* **argmax ties** are broken by the lower class index (``np.argmax`` semantics); the same rule
  orders classes for top-k (a stable sort on ``-probs``).
* **Track-level aggregation** (:func:`aggregate_tracks`) turns window-level probabilities into
  one row per track, two ways:

  - ``mean``: the mean of the window probabilities; the prediction is its argmax.
  - ``vote``: each window votes for its argmax class; the class with most votes wins.
    **Tie rule**: among classes with the same number of votes, the one with the higher mean
    window probability wins; if that also ties, the lower class index wins. The score row used
    for top-k under ``vote`` ranks classes by (votes, mean probability, -index) in that order.

* **Macro averages** (balanced accuracy, macro-F1) are taken over the classes present in
  ``y_true`` (balanced accuracy, as scikit-learn) or in ``y_true`` or ``y_pred`` (macro-F1, as
  scikit-learn's ``f1_score(average="macro")``); precision/recall/F1 with a zero denominator are 0.
* **Tempo** (``tempo_metrics``): Acc1 = estimate within 4 % of the reference
  (``|est - ref| <= 0.04 * ref``, the boundary counts as correct); Acc2 = Acc1 against any of
  ``ref * {1, 2, 3, 1/2, 1/3}`` with the 4 % tolerance relative to the scaled reference;
  MAE in BPM. Tracks without a reference (NaN) are left out and counted (``n_no_reference``);
  tracks without an estimate (NaN) count as wrong for Acc1/Acc2 and are left out of the MAE
  (``n_no_estimate``).
* **Tags** (``tag_metrics``): macro ROC-AUC and PR-AUC (average precision) over tags; a tag
  whose ground truth holds a single class over the evaluated tracks has no defined AUC and is
  skipped; skipped tags are listed in the result (``tags_skipped``), never silently dropped.

scikit-learn's ``sklearn.metrics`` computes the classification and ranking metrics (imported
inside the functions, so importing this module costs NumPy only); the rules that are ours — the
tie rules, top-k, track aggregation, tempo accuracy — are written here once. A leaf: it imports
no other module of mgr.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TEMPO_TOLERANCE = 0.04
TEMPO_FACTORS = (1.0, 2.0, 3.0, 1.0 / 2.0, 1.0 / 3.0)
_REL_EPS = 1e-9  # float slack so that "exactly 4 %" stays inside the tolerance

__all__ = [
    "accuracy",
    "aggregate_tracks",
    "average_precision",
    "balanced_accuracy",
    "classification_metrics",
    "confusion_matrix",
    "macro_f1",
    "mean_std",
    "per_class_precision_recall",
    "roc_auc",
    "tag_f1_at_threshold",
    "tag_metrics",
    "tempo_acc1",
    "tempo_acc2",
    "tempo_mae",
    "tempo_pairs",
    "tempo_within",
    "tempo_metrics",
    "top_k_accuracy",
    "vote",
]


def _labels(y: Any) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {a.shape}")
    return a.astype(np.int64, copy=False)


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({t.size} vs {p.size})")
    return t, p


def _n_classes(n_classes: int | None, *arrays: np.ndarray) -> int:
    top = max((int(a.max()) + 1 for a in arrays if a.size), default=0)
    if n_classes is None:
        return top
    if top > n_classes:
        raise ValueError(f"label {top - 1} out of range for {n_classes} classes")
    return int(n_classes)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of exact matches (NaN for empty input)."""
    t, p = _pair(y_true, y_pred)
    if not t.size:
        return float("nan")
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(t, p))


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int | None = None) -> np.ndarray:
    """``(n_classes, n_classes)`` int counts: rows = actual class, columns = predicted class."""
    t, p = _pair(y_true, y_pred)
    k = _n_classes(n_classes, t, p)
    if not t.size or not k:
        return np.zeros((k, k), dtype=np.int64)
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    return sk_confusion_matrix(t, p, labels=np.arange(k)).astype(np.int64)


def per_class_precision_recall(
    y_true: Any, y_pred: Any, n_classes: int | None = None
) -> dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` (0 where undefined) and ``support`` (true count)."""
    t, p = _pair(y_true, y_pred)
    k = _n_classes(n_classes, t, p)
    if not t.size or not k:
        z = np.zeros(k)
        return {"precision": z, "recall": z.copy(), "f1": z.copy(), "support": np.zeros(k, np.int64)}
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        t, p, labels=np.arange(k), average=None, zero_division=0.0)
    return {"precision": precision.astype(float), "recall": recall.astype(float), "f1": f1.astype(float),
            "support": support.astype(np.int64)}


def balanced_accuracy(y_true: Any, y_pred: Any, n_classes: int | None = None) -> float:
    """Mean recall over the classes present in ``y_true`` (``sklearn.metrics.balanced_accuracy_score``)."""
    t, p = _pair(y_true, y_pred)
    _n_classes(n_classes, t, p)
    if not t.size:
        return float("nan")
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": that is the definition
        warnings.simplefilter("ignore")
        return float(balanced_accuracy_score(t, p))


def macro_f1(y_true: Any, y_pred: Any, n_classes: int | None = None) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` or ``y_pred``
    (``sklearn.metrics.f1_score(average="macro")``; F1 with a zero denominator is 0)."""
    t, p = _pair(y_true, y_pred)
    _n_classes(n_classes, t, p)
    if not t.size:
        return float("nan")
    from sklearn.metrics import f1_score

    return float(f1_score(t, p, average="macro", zero_division=0.0))


def _ranking(scores: np.ndarray) -> np.ndarray:
    """Class indices per row, best first; ties -> lower class index first (stable sort)."""
    return np.argsort(-scores, axis=1, kind="stable")


def top_k_accuracy(y_true: Any, scores: Any, k: int = 3) -> float:
    """Fraction of rows whose true class is among the ``k`` best-scored classes.

    Classes are ranked by score, ties broken by the lower class index, so exactly ``k`` classes
    count per row (a tie at the boundary is not resolved in the model's favour).
    """
    t = _labels(y_true)
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or s.shape[0] != t.size:
        raise ValueError(f"scores must be (n, n_classes) with n = {t.size}, got {s.shape}")
    if not t.size:
        return float("nan")
    top = _ranking(s)[:, : max(1, int(k))]
    return float(np.mean(np.any(top == t[:, None], axis=1)))


def classification_metrics(
    y_true: Any, scores: Any, labels: Sequence[str], *, k: int = 3, y_pred: Any | None = None
) -> dict[str, Any]:
    """All classification metrics for one set of predictions, as plain JSON-able values.

    ``y_pred`` defaults to the argmax of ``scores`` (ties -> lower index). Returns ``n``,
    ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``top{k}``, ``per_class``
    (label -> precision/recall/f1/support) and ``confusion`` (list of rows; actual x predicted).
    """
    t = _labels(y_true)
    s = np.asarray(scores, dtype=float)
    n_classes = len(labels)
    if s.ndim != 2 or s.shape != (t.size, n_classes):
        raise ValueError(f"scores must be ({t.size}, {n_classes}), got {s.shape}")
    p = _labels(y_pred) if y_pred is not None else (s.argmax(axis=1) if t.size else np.zeros(0, np.int64))
    pr = per_class_precision_recall(t, p, n_classes)
    return {
        "n": int(t.size),
        "accuracy": accuracy(t, p),
        "balanced_accuracy": balanced_accuracy(t, p, n_classes),
        "macro_f1": macro_f1(t, p, n_classes),
        f"top{k}": top_k_accuracy(t, s, k),
        "per_class": {
            str(lab): {
                "precision": float(pr["precision"][i]),
                "recall": float(pr["recall"][i]),
                "f1": float(pr["f1"][i]),
                "support": int(pr["support"][i]),
            }
            for i, lab in enumerate(labels)
        },
        "confusion": confusion_matrix(t, p, n_classes).tolist(),
    }


def vote(window_probs: Any) -> tuple[int, np.ndarray]:
    """Majority vote over the windows of one track.

    Returns ``(predicted class, scores)``. Each window votes for its argmax (ties -> lower
    index). Tie rule between classes with equal votes: higher mean window probability, then
    lower class index. ``scores`` ranks the classes in that exact order (usable for top-k):
    ``votes / n + mean_prob / (2 n)`` — one vote outweighs any difference in mean probability.
    """
    w = np.asarray(window_probs, dtype=float)
    if w.ndim != 2 or w.shape[0] == 0:
        raise ValueError(f"window_probs must be (n_windows >= 1, n_classes), got {w.shape}")
    n, k = w.shape
    votes = np.bincount(w.argmax(axis=1), minlength=k).astype(float)
    mean = w.mean(axis=0)
    # lexicographic (votes desc, mean desc, index asc)
    order = np.lexsort((np.arange(k), -mean, -votes))
    pred = int(order[0])
    scores = votes / n + np.clip(mean, 0.0, 1.0) / (2.0 * n)
    # the score row must rank exactly as the lexicographic order (guard float edge cases)
    if int(_ranking(scores[None, :])[0, 0]) != pred:  # pragma: no cover - only for probs > 1
        scores = np.zeros(k)
        scores[order] = np.linspace(1.0, 0.0, k, endpoint=False)
    return pred, scores


def aggregate_tracks(
    window_probs: Any, track_index: Any, how: str = "mean"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window-level probabilities -> one row per track.

    Parameters
    ----------
    window_probs : (n_windows, n_classes) probabilities.
    track_index : (n_windows,) track identifier of each window (any sortable values).
    how : ``"mean"`` (mean probability) or ``"vote"`` (majority vote, tie rule in :func:`vote`).

    Returns
    -------
    tracks : unique track identifiers, sorted.
    scores : (n_tracks, n_classes) mean probabilities (``mean``) or vote scores (``vote``).
    pred : (n_tracks,) predicted class per track.
    """
    w = np.asarray(window_probs, dtype=float)
    idx = np.asarray(track_index)
    if w.ndim != 2 or idx.shape != (w.shape[0],):
        raise ValueError(f"window_probs {w.shape} and track_index {idx.shape} do not match")
    tracks, inv = np.unique(idx, return_inverse=True)
    k = w.shape[1]
    if how == "mean":
        sums = np.zeros((tracks.size, k))
        np.add.at(sums, inv, w)
        counts = np.bincount(inv, minlength=tracks.size).astype(float)
        scores = sums / counts[:, None]
        return tracks, scores, scores.argmax(axis=1) if tracks.size else np.zeros(0, np.int64)
    if how == "vote":
        scores = np.zeros((tracks.size, k))
        pred = np.zeros(tracks.size, dtype=np.int64)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(tracks.size + 1))
        for j in range(tracks.size):
            pred[j], scores[j] = vote(w[order[bounds[j] : bounds[j + 1]]])
        return tracks, scores, pred
    raise ValueError(f"unknown aggregation {how!r} (mean | vote)")


def tempo_pairs(est: Any, ref: Any) -> tuple[np.ndarray, np.ndarray]:
    """(estimates, references) where the reference is finite and positive (others are left out)."""
    e = np.asarray(est, dtype=float).ravel()
    r = np.asarray(ref, dtype=float).ravel()
    if e.shape != r.shape:
        raise ValueError(f"tempo estimates and references differ in length ({e.size} vs {r.size})")
    keep = np.isfinite(r) & (r > 0)
    return e[keep], r[keep]


def tempo_within(e: np.ndarray, r: np.ndarray, tol: float) -> np.ndarray:
    """``|e - r| <= tol * r`` elementwise (the boundary included; a NaN estimate is False)."""
    with np.errstate(invalid="ignore"):
        return np.abs(e - r) <= tol * r * (1.0 + _REL_EPS) + 1e-12


def tempo_acc1(est: Any, ref: Any, tol: float = TEMPO_TOLERANCE) -> float:
    """Accuracy1: ``|est - ref| <= tol * ref`` (boundary included); NaN refs left out."""
    e, r = tempo_pairs(est, ref)
    return float(np.mean(tempo_within(e, r, tol))) if r.size else float("nan")


def tempo_acc2(est: Any, ref: Any, tol: float = TEMPO_TOLERANCE, factors: Sequence[float] = TEMPO_FACTORS) -> float:
    """Accuracy2: Acc1 against any of ``ref * factor`` (x1, x2, x3, x1/2, x1/3 by default)."""
    e, r = tempo_pairs(est, ref)
    if not r.size:
        return float("nan")
    ok = np.zeros(r.size, dtype=bool)
    for f in factors:
        ok |= tempo_within(e, r * f, tol)
    return float(np.mean(ok))


def tempo_mae(est: Any, ref: Any) -> float:
    """Mean absolute error in BPM over tracks with both a reference and an estimate."""
    e, r = tempo_pairs(est, ref)
    ok = np.isfinite(e)
    return float(np.mean(np.abs(e[ok] - r[ok]))) if ok.any() else float("nan")


def tempo_metrics(est: Any, ref: Any, tol: float = TEMPO_TOLERANCE) -> dict[str, Any]:
    """Acc1, Acc2, MAE and the counts behind them."""
    e_all = np.asarray(est, dtype=float).ravel()
    r_all = np.asarray(ref, dtype=float).ravel()
    e, r = tempo_pairs(e_all, r_all)
    return {
        "n": int(r.size),
        "n_no_reference": int(r_all.size - r.size),
        "n_no_estimate": int(np.sum(~np.isfinite(e))),
        "acc1": tempo_acc1(e, r, tol),
        "acc2": tempo_acc2(e, r, tol),
        "mae_bpm": tempo_mae(e, r),
    }


def roc_auc(y_true: Any, scores: Any) -> float:
    """Binary ROC-AUC (``sklearn.metrics.roc_auc_score``; tied scores count 1/2). NaN if only one
    class is present."""
    y = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(scores, dtype=float).ravel()
    if y.all() or not y.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def average_precision(y_true: Any, scores: Any) -> float:
    """PR-AUC as average precision, ``sum_n (R_n - R_{n-1}) P_n`` over distinct score thresholds
    (``sklearn.metrics.average_precision_score``). NaN if there is no positive."""
    y = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(scores, dtype=float).ravel()
    if not y.any():
        return float("nan")
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s))


def tag_metrics(y_true: Any, scores: Any, tag_vocab: Sequence[str] | None = None) -> dict[str, Any]:
    """Macro ROC-AUC and PR-AUC over tags (n_tracks x n_tags arrays).

    A tag with only positives or only negatives among the evaluated tracks is skipped (its AUC
    is undefined) and listed in ``tags_skipped``; the macro means are over ``n_tags_used``.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    if y.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"tag truth {y.shape} and scores {s.shape} must be equal (n, n_tags) arrays")
    names = list(tag_vocab) if tag_vocab is not None else [str(i) for i in range(y.shape[1])]
    rocs, prs, skipped, per_tag = [], [], [], {}
    for j, name in enumerate(names):
        col = y[:, j].astype(bool)
        if col.all() or not col.any():
            skipped.append(name)
            continue
        a, ap = roc_auc(col, s[:, j]), average_precision(col, s[:, j])
        rocs.append(a)
        prs.append(ap)
        per_tag[name] = {"roc_auc": a, "pr_auc": ap, "n_pos": int(col.sum())}
    return {
        "n": int(y.shape[0]),
        "roc_auc": float(np.mean(rocs)) if rocs else float("nan"),
        "pr_auc": float(np.mean(prs)) if prs else float("nan"),
        "n_tags_used": len(rocs),
        "tags_skipped": skipped,
        "per_tag": per_tag,
    }


def tag_f1_at_threshold(truth: np.ndarray, scores: np.ndarray, threshold: float, skipped: list[str], names: list[str]) -> float:
    """Macro F1 over the used tags with ``score >= threshold`` as positive."""
    f1s = []
    for j, n in enumerate(names):
        if n in skipped:
            continue
        pr = per_class_precision_recall(truth[:, j].astype(int), (scores[:, j] >= threshold).astype(int), 2)
        f1s.append(pr["f1"][1])
    return float(np.mean(f1s)) if f1s else float("nan")


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and population std (ddof=0) of per-fold values, ignoring NaN; NaN if none."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}
