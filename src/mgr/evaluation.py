"""Metric functions and track-level aggregation: one protocol for every model.

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

The evaluate stage (:func:`run_evaluate`)
-----------------------------------------
* Every model of ``ml.models`` + ``dl.models`` with an artifact is scored on the **test tracks
  of split.csv** (val and train are never used); a listed model without an artifact is named
  in the leaderboard and the log, not ranked.
* **Windows.** A deep model can only score windows of its input length (the card's
  ``window_frames``), so that is what it is fed. ``evaluate.window_s`` / ``evaluate.overlap``
  set the *segments* that form the window level and the units that are aggregated per track,
  the same for every model: a segment longer than the model's input is tiled by model windows
  (same overlap, last one end-aligned) whose probabilities are averaged; a segment not longer
  than the model's input is the model window itself (the protocol block of the metrics says
  which length was used). With the defaults (3 s, 50 %; ``train.window_s`` 3 s) segment =
  model window. Track level = mean of segment probabilities, or majority vote over segments
  (``evaluate.aggregate`` picks the headline; both are reported). Classical models have one
  feature row per track: no window level.
* **Skipped tracks**: test tracks with no feature row / not in the spectrogram store (decoding
  failed) are counted in ``n_skipped`` and listed with their reason; ``n_tracks`` is the number
  of test tracks in split.csv.
* **k-fold** (split.csv has ``fold``): each fold's test part is scored; ``track`` in the metrics
  is the mean over folds (``track_std`` the std), ``per_fold`` the detail. A model directory
  with ``fold_<f>/`` sub-artifacts is scored per fold. Otherwise the single artifact is scored on
  the fold it was trained on (deep: the card's ``fold``; classical: fold 0), and for classical
  models the remaining folds are taken from ``metrics/train-ml/<name>.json`` (``per_fold.<f>.test``:
  train-ml fits one model per fold and scores its test part with these same functions); each
  fold's ``source`` says where it came from. train-dl writes ``fold_<f>/`` artifacts for every
  fold (unless ``train.all_folds`` is false), so deep models report every fold too; ``n_folds``
  says how many folds a row averages.
* **Tempo**: the model's track-level tempo is the read-out (:func:`mgr.models.deep.bpm_from_probs`)
  of the mean tempo-class probabilities; the DSP baseline is ``librosa.feature.tempo`` on the same
  test tracks' audio, decoded with the pipeline's ``audio`` params.
* **Calibration** (track level, on the mean probabilities; classical: the row's): top-label
  expected calibration error over 15 equal-width confidence bins (:func:`expected_calibration_error`)
  and the multiclass Brier score (:func:`brier_score`), ``track.ece`` / ``track.brier``.
* **Per-track predictions**: ``reports/predictions/<model>.csv`` (``track_id, fold, true,
  predicted, p_<label>...``; git-tracked) so that two commits can be compared track by track
  (:mod:`mgr.compare`, ``mgr compare``).
* Deterministic: floats are rounded to 6 decimals and nothing time-dependent is written, so
  ``dvc repro --force -s evaluate`` rewrites identical files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mgr.calibration import ECE_BINS, brier_score, expected_calibration_error

TEMPO_TOLERANCE = 0.04
TEMPO_FACTORS = (1.0, 2.0, 3.0, 1.0 / 2.0, 1.0 / 3.0)
_REL_EPS = 1e-9  # float slack so that "exactly 4 %" stays inside the tolerance

__all__ = [
    "accuracy",
    "aggregate_tracks",
    "balanced_accuracy",
    "classification_metrics",
    "confusion_matrix",
    "macro_f1",
    "mean_std",
    "per_class_precision_recall",
    "roc_auc",
    "average_precision",
    "brier_score",
    "expected_calibration_error",
    "tag_metrics",
    "tempo_acc1",
    "tempo_acc2",
    "tempo_from_probs",
    "tempo_mae",
    "tempo_metrics",
    "top_k_accuracy",
    "vote",
]


# ------------------------------------------------------------------------------ basics
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
    return float(np.mean(t == p)) if t.size else float("nan")


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int | None = None) -> np.ndarray:
    """``(n_classes, n_classes)`` int counts: rows = actual class, columns = predicted class."""
    t, p = _pair(y_true, y_pred)
    k = _n_classes(n_classes, t, p)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def per_class_precision_recall(
    y_true: Any, y_pred: Any, n_classes: int | None = None
) -> dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` (0 where undefined) and ``support`` (true count)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(float)
    pred_n = cm.sum(axis=0).astype(float)
    true_n = cm.sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_n > 0, tp / pred_n, 0.0)
        recall = np.where(true_n > 0, tp / true_n, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": true_n.astype(np.int64)}


def balanced_accuracy(y_true: Any, y_pred: Any, n_classes: int | None = None) -> float:
    """Mean recall over the classes present in ``y_true``."""
    t, _ = _pair(y_true, y_pred)
    if not t.size:
        return float("nan")
    pr = per_class_precision_recall(y_true, y_pred, n_classes)
    present = pr["support"] > 0
    return float(pr["recall"][present].mean())


def macro_f1(y_true: Any, y_pred: Any, n_classes: int | None = None) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` or ``y_pred``."""
    t, p = _pair(y_true, y_pred)
    if not t.size:
        return float("nan")
    pr = per_class_precision_recall(t, p, n_classes)
    k = pr["f1"].size
    present = np.zeros(k, dtype=bool)
    present[np.unique(t)] = True
    present[np.unique(p)] = True
    return float(pr["f1"][present].mean())


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


# ----------------------------------------------------------------------- calibration


# ----------------------------------------------------------------------- aggregation
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


# ------------------------------------------------------------------------------ tempo
def _tempo_arrays(est: Any, ref: Any) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(est, dtype=float).ravel()
    r = np.asarray(ref, dtype=float).ravel()
    if e.shape != r.shape:
        raise ValueError(f"tempo estimates and references differ in length ({e.size} vs {r.size})")
    keep = np.isfinite(r) & (r > 0)
    return e[keep], r[keep]


def _within(e: np.ndarray, r: np.ndarray, tol: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(e - r) <= tol * r * (1.0 + _REL_EPS) + 1e-12


def tempo_acc1(est: Any, ref: Any, tol: float = TEMPO_TOLERANCE) -> float:
    """Accuracy1: ``|est - ref| <= tol * ref`` (boundary included); NaN refs left out."""
    e, r = _tempo_arrays(est, ref)
    return float(np.mean(_within(e, r, tol))) if r.size else float("nan")


def tempo_acc2(est: Any, ref: Any, tol: float = TEMPO_TOLERANCE, factors: Sequence[float] = TEMPO_FACTORS) -> float:
    """Accuracy2: Acc1 against any of ``ref * factor`` (x1, x2, x3, x1/2, x1/3 by default)."""
    e, r = _tempo_arrays(est, ref)
    if not r.size:
        return float("nan")
    ok = np.zeros(r.size, dtype=bool)
    for f in factors:
        ok |= _within(e, r * f, tol)
    return float(np.mean(ok))


def tempo_mae(est: Any, ref: Any) -> float:
    """Mean absolute error in BPM over tracks with both a reference and an estimate."""
    e, r = _tempo_arrays(est, ref)
    ok = np.isfinite(e)
    return float(np.mean(np.abs(e[ok] - r[ok]))) if ok.any() else float("nan")


def tempo_metrics(est: Any, ref: Any, tol: float = TEMPO_TOLERANCE) -> dict[str, Any]:
    """Acc1, Acc2, MAE and the counts behind them."""
    e_all = np.asarray(est, dtype=float).ravel()
    r_all = np.asarray(ref, dtype=float).ravel()
    e, r = _tempo_arrays(e_all, r_all)
    return {
        "n": int(r.size),
        "n_no_reference": int(r_all.size - r.size),
        "n_no_estimate": int(np.sum(~np.isfinite(e))),
        "acc1": tempo_acc1(e, r, tol),
        "acc2": tempo_acc2(e, r, tol),
        "mae_bpm": tempo_mae(e, r),
    }


def tempo_from_probs(probs: Any, centres: Any, how: str = "argmax") -> np.ndarray:
    """BPM read-out of tempo-class probabilities: the centre of the argmax class (``argmax``)
    or the probability-weighted mean of the centres (``weighted``)."""
    p = np.atleast_2d(np.asarray(probs, dtype=float))
    c = np.asarray(centres, dtype=float).ravel()
    if p.shape[1] != c.size:
        raise ValueError(f"tempo probs have {p.shape[1]} classes but {c.size} bin centres")
    if how == "argmax":
        return c[p.argmax(axis=1)]
    if how == "weighted":
        s = p.sum(axis=1, keepdims=True)
        return (p @ c[:, None]).ravel() / np.where(s > 0, s, 1.0).ravel()
    raise ValueError(f"unknown tempo read-out {how!r} (argmax | weighted)")


# ------------------------------------------------------------------------------- tags
def roc_auc(y_true: Any, scores: Any) -> float:
    """Binary ROC-AUC (Mann-Whitney; tied scores count 1/2). NaN if only one class present."""
    y = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(scores, dtype=float).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # average ranks (1-based) handle ties
    order = np.argsort(s, kind="stable")
    ranks = np.empty(s.size, dtype=float)
    sorted_s = s[order]
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y_true: Any, scores: Any) -> float:
    """PR-AUC as average precision: ``sum_n (R_n - R_{n-1}) P_n`` over distinct score
    thresholds, highest first (scikit-learn's definition). NaN if there is no positive."""
    y = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(scores, dtype=float).ravel()
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # last index of each group of equal scores
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last].astype(float)
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


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


# ------------------------------------------------------------------------------ folds
def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and population std (ddof=0) of per-fold values, ignoring NaN; NaN if none."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


# ====================================================================================
# The evaluate stage: every trained model scored the same way on the same test tracks.
# Heavy imports (pandas, keras via the model loaders, librosa, matplotlib) stay inside.
# ====================================================================================
HEADLINE_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "top3")
# track-level calibration of the mean probabilities (classical: the row's probabilities)
CALIBRATION_KEYS = ("ece", "brier")
_ROUND = 6  # decimals written to metrics files (stable bytes across reruns)


def _r(x: Any) -> Any:
    """Round floats (recursively) for stable, readable metrics files; NaN -> None."""
    if isinstance(x, dict):
        return {str(k): _r(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_r(v) for v in x]
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return None if not np.isfinite(f) else round(f, _ROUND)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in HEADLINE_KEYS + CALIBRATION_KEYS if k in m}


def split_test_ids(split: Any, fold: int | None) -> list[str]:
    """Test track ids of ``split.csv`` (of fold ``fold``'s assignment in k-fold mode), sorted."""
    from mgr.split import fold_split

    part = split if fold is None else fold_split(split, fold)
    return sorted(part.loc[part["split"] == "test", "track_id"].astype(str))


def split_folds(split: Any) -> list[int | None]:
    """``[0..k-1]`` in k-fold mode (a ``fold`` column with >= 2 folds), else ``[None]``."""
    if "fold" in split.columns:
        f = split["fold"]
        if f.notna().all() and (f >= 0).all() and f.nunique() >= 2:
            return list(range(int(f.max()) + 1))
    return [None]


def find_artifacts(models_dir: str | Any, name: str, folds: list[int | None]) -> dict[int | None, Any]:
    """The artifact directories of model ``name``, keyed by the fold whose test part they may score.

    * ``models/<name>/fold_<f>/model.json`` for every fold that has one (one model per fold);
    * else ``models/<name>/model.json``: in k-fold mode it belongs to the fold named by its
      card's ``fold`` (deep models) or fold 0 (classical: train-ml saves fold 0's model);
      without folds it scores the ``test`` part of the split.
    Empty when the model has no artifact.
    """
    import json
    from pathlib import Path

    base = Path(models_dir) / name
    if folds != [None]:
        per = {f: base / f"fold_{f}" for f in folds if (base / f"fold_{f}" / "model.json").is_file()}
        if per:
            return per
    card_path = base / "model.json"
    if not card_path.is_file():
        return {}
    if folds == [None]:
        return {None: base}
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError):
        card = {}
    f = card.get("fold") if isinstance(card, dict) else None
    f = int(f) if isinstance(f, int) and f in folds else 0
    return {f: base}


def _label_map(model_labels: Sequence[str], data_labels: Sequence[str], name: str) -> np.ndarray:
    """Index map data label -> model label; an unknown data label is an ArtifactError."""
    from mgr.errors import ArtifactError

    pos = {lab: i for i, lab in enumerate(model_labels)}
    missing = [lab for lab in data_labels if lab not in pos]
    if missing:
        raise ArtifactError(
            f"model {name}: its labels {list(model_labels)} lack {missing} found in the data "
            "(the artifact was trained on another dataset; retrain it)"
        )
    return np.array([pos[lab] for lab in data_labels], dtype=np.int64)


def _track_result(
    track_ids: Sequence[str], y: np.ndarray, scores: np.ndarray, pred: np.ndarray, labels: Sequence[str],
    probs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Track-level metrics; ``probs`` (the mean probabilities; default ``scores``) give the
    calibration (``ece``, ``brier``)."""
    m = classification_metrics(y, scores, list(labels), k=3, y_pred=pred)
    m.pop("confusion")
    pr = scores if probs is None else probs
    m["ece"] = expected_calibration_error(y, pr)
    m["brier"] = brier_score(y, pr)
    return m


def evaluate_classical(art: Any, table: Any, test_ids: Sequence[str]) -> dict[str, Any]:
    """Score a classical artifact on the test tracks' feature rows.

    Test tracks without a feature row (failed extraction) or with non-finite features are
    skipped and listed with their reason. Features are per track, so there is no window level.
    Returns ``{"n_tracks", "n_skipped", "skipped", "track", "predictions"}``.
    """
    from mgr.errors import ArtifactError

    labels = list(art.labels)
    rows = table[table["track_id"].astype(str).isin(set(test_ids))]
    have = set(rows["track_id"].astype(str))
    skipped = {t: "no feature row (feature extraction failed or the track was rejected)" for t in test_ids if t not in have}
    X = art.matrix(rows)  # checks the feature columns against the card
    finite = np.isfinite(X).all(axis=1)
    for t in rows.loc[~finite, "track_id"].astype(str):
        skipped[t] = "non-finite feature values"
    rows, X = rows[finite], X[finite]
    pos = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted(set(rows["genre"].astype(str)) - set(pos))
    if unknown:
        raise ArtifactError(
            f"model {art.name}: test genres {unknown} are not among its labels {labels} "
            "(the artifact was trained on another dataset; retrain it)"
        )
    y = np.array([pos[g] for g in rows["genre"].astype(str)], dtype=np.int64)
    tids = rows["track_id"].astype(str).to_numpy()
    probs = art.predict_proba(X) if len(X) else np.zeros((0, len(labels)))
    tracks, scores, pred = aggregate_tracks(probs, tids, "mean")
    first = dict(zip(tids, y))
    y_t = np.array([first[t] for t in tracks], dtype=np.int64)
    track = _track_result(tracks, y_t, scores, pred, labels)
    return {
        "n_tracks": len(test_ids),
        "n_skipped": len(skipped),
        "skipped": dict(sorted(skipped.items())),
        "track": track,
        "track_mean": _headline(track),
        "predictions": list(zip(tracks.tolist(), [labels[i] for i in y_t], [labels[i] for i in pred])),
        "confusion": confusion_matrix(y_t, pred, len(labels)),
        "labels": labels,
        "_probs": scores,
    }


def _segment_windows(store: Any, i: int, seg_frames: int, model_frames: int, overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """Model-input windows of track ``i`` and the segment each belongs to.

    Segments (the window-level unit) are ``seg_frames`` long with ``overlap`` and cover the whole
    track (:meth:`SpectrogramStore.track_windows`). When a segment is longer than the model's
    input, it is tiled by model windows with the same overlap (last one end-aligned) and the
    segment's probabilities are the mean over them; when it is not longer, segment = model window.
    """
    if seg_frames <= model_frames:
        X = store.track_windows(i, model_frames, overlap)
        return X, np.arange(len(X))
    segs = store.track_windows(i, seg_frames, overlap)
    hop = max(1, int(round(model_frames * (1.0 - overlap))))
    starts = list(range(0, seg_frames - model_frames + 1, hop))
    if starts[-1] + model_frames < seg_frames:
        starts.append(seg_frames - model_frames)
    X = np.stack([s[:, a : a + model_frames] for s in segs for a in starts])
    return X, np.repeat(np.arange(len(segs)), len(starts))


def _same_frontend(a: dict, b: dict) -> list[str]:
    import json

    norm = lambda d: {k: json.loads(json.dumps(v)) for k, v in d.items()}  # noqa: E731
    a, b = norm(a), norm(b)
    return sorted(k for k in set(a) & set(b) if a[k] != b[k])


def evaluate_deep(
    art: Any,
    store: Any,
    test_ids: Sequence[str],
    *,
    window_s: float,
    overlap: float,
    tag_threshold: float = 0.5,
    batch_windows: int = 1024,
) -> dict[str, Any]:
    """Score a deep artifact on the test tracks of the spectrogram store.

    Window level: segments of ``window_s`` seconds (``overlap``), each scored by the model on
    windows of its own input length (the card's ``window_frames``; see :func:`_segment_windows`).
    Track level: mean of the segment probabilities, and majority vote over segments (tie rule
    in :func:`vote`). Tempo (tempo head + reference BPM) and tags (tags head + tag truth) use the
    mean over segments. Test tracks missing from the store are skipped and listed.
    """
    from mgr.errors import ArtifactError
    from mgr.models.deep import bpm_from_probs, bpm_to_class

    diff = _same_frontend(dict(art.frontend), dict(store.frontend))
    if diff:
        raise ArtifactError(
            f"model {art.name}: trained on another spectrogram front end (differs in {diff}); retrain it"
        )
    labels = list(art.labels)
    lmap = _label_map(labels, list(store.labels), art.name)
    index = {str(t): j for j, t in enumerate(store.track_ids)}
    skipped = {t: "not in the spectrogram store (decoding failed or the track was rejected)" for t in test_ids if t not in index}
    idx = [index[t] for t in test_ids if t in index]
    W = int(art.window_frames)
    seg = max(store.frames_for_seconds(window_s), 1)
    segment_frames = max(seg, W)

    seg_probs: list[np.ndarray] = []  # per track: (n_segments, n_classes)
    seg_tempo: list[np.ndarray] = []
    seg_tags: list[np.ndarray] = []
    pending: list[tuple[np.ndarray, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        X = np.concatenate([p[0] for p in pending])
        out = art.predict_windows(X)
        start = 0
        for Xi, segi in pending:
            n = len(Xi)
            nseg = int(segi.max()) + 1
            for key, dest in (("genre", seg_probs), ("tempo", seg_tempo), ("tags", seg_tags)):
                if key not in out:
                    continue
                o = np.asarray(out[key][start : start + n], dtype=np.float64)
                s = np.zeros((nseg, o.shape[1]))
                np.add.at(s, segi, o)
                dest.append(s / np.bincount(segi, minlength=nseg)[:, None])
            start += n
        pending.clear()

    n_pending = 0
    for i in idx:
        X, segi = _segment_windows(store, i, segment_frames, W, overlap)
        pending.append((X, segi))
        n_pending += len(X)
        if n_pending >= batch_windows:
            flush()
            n_pending = 0
    flush()

    y = lmap[np.asarray(store.genre_idx)[idx]] if idx else np.zeros(0, np.int64)
    tids = [str(store.track_ids[i]) for i in idx]
    # window (segment) level
    if idx:
        wprobs = np.concatenate(seg_probs)
        wtrack = np.repeat(np.arange(len(idx)), [len(s) for s in seg_probs])
    else:
        wprobs, wtrack = np.zeros((0, len(labels))), np.zeros(0, np.int64)
    window = _headline(classification_metrics(y[wtrack], wprobs, labels, k=3))
    window["n_windows"] = int(len(wprobs))
    _, mscores, mpred = aggregate_tracks(wprobs, wtrack, "mean")
    _, vscores, vpred = aggregate_tracks(wprobs, wtrack, "vote")
    track_mean = _track_result(tids, y, mscores, mpred, labels)
    # calibration is a property of probabilities: the vote rule reports the mean's
    track_vote = _track_result(tids, y, vscores, vpred, labels, probs=mscores)
    res: dict[str, Any] = {
        "n_tracks": len(test_ids),
        "n_skipped": len(skipped),
        "skipped": dict(sorted(skipped.items())),
        "window": window,
        "track_mean": track_mean,
        "track_vote": track_vote,
        "protocol": {
            "segment_s": round(segment_frames * store.frontend["hop"] / store.frontend["sr"], 4),
            "segment_frames": int(segment_frames),
            "model_window_frames": W,
            "overlap": float(overlap),
        },
        "labels": labels,
        "_scores": {"mean": (mpred, y), "vote": (vpred, y)},
        "_tids": tids,
        "_probs": mscores,
    }
    # tempo
    ref = np.asarray(store.tempo_bpm, dtype=float)[idx] if idx else np.zeros(0)
    if seg_tempo and np.isfinite(ref).any():
        tprob = np.stack([s.mean(axis=0) for s in seg_tempo])
        bins = art.card.get("tempo_bins") or {}
        est = bpm_from_probs(tprob, bins.get("centres", art.tempo_centres), log=bins.get("kind") == "log")
        tm = tempo_metrics(est, ref)
        if bins.get("edges"):
            ok = np.isfinite(ref)
            cls = bpm_to_class(ref[ok], bins["edges"])
            tm["class_accuracy"] = accuracy(cls, tprob[ok].argmax(axis=1)) if ok.any() else float("nan")
        res["tempo"] = tm
        res["_tempo_ref"] = dict(zip(tids, ref.tolist()))
        res["_tempo_est"] = dict(zip(tids, np.asarray(est, float).tolist()))  # mgr.tempo.protocol.side_by_side
    # tags
    if seg_tags and len(store.tag_vocab):
        vocab = list(art.tag_vocab) or list(store.tag_vocab)
        spos = {t: j for j, t in enumerate(store.tag_vocab)}
        common = [j for j, t in enumerate(vocab) if t in spos]
        tscore = np.stack([s.mean(axis=0) for s in seg_tags])[:, common]
        truth = np.asarray(store.tags)[idx][:, [spos[vocab[j]] for j in common]]
        tg = tag_metrics(truth, tscore, [vocab[j] for j in common])
        tg["f1_at_threshold"] = _tag_f1(truth, tscore, tag_threshold, tg["tags_skipped"], [vocab[j] for j in common])
        tg["threshold"] = float(tag_threshold)
        res["tags"] = tg
    return res


def _tag_f1(truth: np.ndarray, scores: np.ndarray, threshold: float, skipped: list[str], names: list[str]) -> float:
    """Macro F1 over the used tags with ``score >= threshold`` as positive."""
    f1s = []
    for j, n in enumerate(names):
        if n in skipped:
            continue
        pr = per_class_precision_recall(truth[:, j].astype(int), (scores[:, j] >= threshold).astype(int), 2)
        f1s.append(pr["f1"][1])
    return float(np.mean(f1s)) if f1s else float("nan")


def _tempo_job(args: tuple) -> tuple[str, float, str | None]:
    track_id, path, audio = args
    try:
        from mgr import fastdsp
        from mgr.audio import load_audio

        y = load_audio(path, sr=audio["sample_rate"], offset_s=audio["offset_s"], duration_s=audio["duration_s"], pad=audio["pad"])
        # = librosa.feature.tempo(y=y, sr=sr)[0] (tested equal), without librosa's numba kernels:
        # workers compiling those concurrently can corrupt numba's on-disk cache (numba #10128)
        bpm = fastdsp.tempo(y, audio["sample_rate"])
        return track_id, bpm, None
    except Exception as e:  # a broken file is counted, never a crash of the stage
        return track_id, float("nan"), f"{type(e).__name__}: {e}"


def tempo_baseline(tracks: Any, track_ids: Sequence[str], audio: dict, workers: int = 0) -> dict[str, Any]:
    """DSP tempo baseline: ``librosa.feature.tempo`` (default settings; computed by its NumPy
    twin :func:`mgr.fastdsp.tempo`) on the tracks' audio, decoded with the pipeline's audio policy. Tracks without a reference tempo are not run.

    Returns ``{"estimates": {track_id: bpm or NaN}, "failed": {track_id: reason}, "metrics": ...}``.
    """
    from mgr.utils import n_workers, process_pool

    t = tracks.set_index(tracks["track_id"].astype(str))
    ids = [i for i in track_ids if i in t.index and np.isfinite(t.at[i, "tempo_bpm"])]
    jobs = [(i, str(t.at[i, "path"]), audio) for i in ids]
    n = min(n_workers(workers), max(1, len(jobs)))
    if n > 1 and len(jobs) > 8:
        with process_pool(n) as ex:  # workers die with this process
            out = list(ex.map(_tempo_job, jobs, chunksize=4))
    else:
        out = [_tempo_job(j) for j in jobs]
    est = {i: b for i, b, _ in out}
    failed = {i: r for i, _, r in out if r}
    ref = np.array([t.at[i, "tempo_bpm"] for i in ids], dtype=float)
    m = tempo_metrics(np.array([est[i] for i in ids], dtype=float), ref)
    return {"estimates": est, "failed": failed, "metrics": m}


# ------------------------------------------------------------------------ the stage
def _fold_record(res: dict[str, Any], how: str) -> dict[str, Any]:
    """The JSON record of one evaluated fold (no private keys)."""
    rec: dict[str, Any] = {"source": "evaluate", "n_tracks": res["n_tracks"], "n_skipped": res["n_skipped"]}
    if res["skipped"]:
        rec["skipped"] = [{"track_id": t, "reason": r} for t, r in res["skipped"].items()]
    if "window" in res:  # deep
        rule = res["track_vote"] if how == "vote" else res["track_mean"]
        rec["track"] = rule
        rec["track_mean"] = _headline(res["track_mean"])
        rec["track_vote"] = _headline(res["track_vote"])
        rec["window"] = res["window"]
        rec["protocol"] = res["protocol"]
    else:  # classical: one feature row per track, mean == vote == the row's probabilities
        rec["track"] = res["track"]
    for key in ("tempo", "tempo_baseline", "tags"):
        if key in res:
            rec[key] = res[key]
    return rec


def _combine_folds(recs: dict[int | None, dict[str, Any]]) -> dict[str, Any]:
    """Per-model metrics: the fold itself (holdout) or mean/std over folds plus per-fold detail."""
    if list(recs) == [None]:
        return dict(recs[None])
    out: dict[str, Any] = {"folds": sorted(recs), "n_folds": len(recs)}
    out["n_tracks"] = sum(r["n_tracks"] for r in recs.values())
    out["n_skipped"] = sum(r["n_skipped"] for r in recs.values())
    stats = {k: mean_std([r["track"].get(k) for r in recs.values()]) for k in HEADLINE_KEYS + CALIBRATION_KEYS
             if any(k in r["track"] for r in recs.values())}
    out["track"] = {k: s["mean"] for k, s in stats.items()}
    out["track_std"] = {k: s["std"] for k, s in stats.items()}
    for sub in ("window", "track_mean", "track_vote"):
        have = [r[sub] for r in recs.values() if sub in r]
        if have:
            out[sub] = {k: mean_std([h.get(k) for h in have])["mean"] for k in HEADLINE_KEYS}
    for key, fields in (("tempo", ("acc1", "acc2", "mae_bpm")), ("tempo_baseline", ("acc1", "acc2", "mae_bpm")),
                        ("tags", ("roc_auc", "pr_auc"))):
        have = [r[key] for r in recs.values() if key in r]
        if have:
            out[key] = {f: mean_std([h.get(f) for h in have])["mean"] for f in fields}
            out[key]["n"] = sum(int(h.get("n", 0)) for h in have)
    out["per_fold"] = {str(f): r for f, r in sorted(recs.items())}
    return out


def summary_entry(m: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one model for ``metrics/summary.json``."""
    t = m["track"]
    e: dict[str, Any] = {
        "accuracy": t.get("accuracy"),
        "balanced_accuracy": t.get("balanced_accuracy"),
        "macro_f1": t.get("macro_f1"),
        "top3": t.get("top3"),
        "ece": t.get("ece"),
        "brier": t.get("brier"),
        "n_tracks": m["n_tracks"],
        "n_skipped": m["n_skipped"],
    }
    if "track_std" in m:
        e["accuracy_std"] = m["track_std"].get("accuracy")
        e["n_folds"] = m["n_folds"]
    if "tempo" in m:
        e["tempo_acc1"] = m["tempo"].get("acc1")
        e["tempo_acc2"] = m["tempo"].get("acc2")
    if "tags" in m:
        e["tags_roc_auc"] = m["tags"].get("roc_auc")
        e["tags_pr_auc"] = m["tags"].get("pr_auc")
    return e


def _fmt(x: Any, std: Any = None) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    s = f"{x:.3f}"
    return s + (f" ± {std:.3f}" if isinstance(std, (int, float)) and std is not None else "")


def leaderboard_markdown(
    summary: dict[str, dict[str, Any]], kinds: dict[str, str], *, protocol: str, missing: Sequence[str] = (),
    baseline: dict[str, Any] | None = None,
) -> str:
    """``reports/leaderboard.md``: a row per model, best first (accuracy, then macro-F1, then name)."""
    order = sorted(summary, key=lambda n: (-(summary[n]["accuracy"] or 0.0), -(summary[n]["macro_f1"] or 0.0), n))
    has_tempo = any("tempo_acc1" in summary[n] for n in order) or baseline is not None
    has_tags = any("tags_roc_auc" in summary[n] for n in order)
    has_folds = any("n_folds" in summary[n] for n in order)
    head = ["#", "model", "kind", "accuracy", "balanced acc.", "macro-F1", "top-3", "ECE", "Brier", "tracks (skipped)"]
    if has_folds:
        head.insert(4, "folds")
    if has_tempo:
        head += ["tempo Acc1", "tempo Acc2"]
    if has_tags:
        head += ["tags ROC-AUC", "tags PR-AUC"]
    lines = [
        "# Leaderboard",
        "",
        f"Test split, track level. {protocol}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for rank, n in enumerate(order, 1):
        s = summary[n]
        std = s.get("accuracy_std") if s.get("n_folds", 1) > 1 else None
        row = [str(rank), n, kinds.get(n, "?"), _fmt(s["accuracy"], std), _fmt(s["balanced_accuracy"]),
               _fmt(s["macro_f1"]), _fmt(s["top3"]), _fmt(s.get("ece")), _fmt(s.get("brier")),
               f"{s['n_tracks']} ({s['n_skipped']})"]
        if has_folds:
            row.insert(4, str(s.get("n_folds", 1)))
        if has_tempo:
            row += [_fmt(s.get("tempo_acc1")), _fmt(s.get("tempo_acc2"))]
        if has_tags:
            row += [_fmt(s.get("tags_roc_auc")), _fmt(s.get("tags_pr_auc"))]
        lines.append("| " + " | ".join(row) + " |")
    if baseline is not None:
        lines += ["", f"Tempo baseline (`librosa.feature.tempo`, same test tracks): Acc1 {_fmt(baseline.get('acc1'))}, "
                  f"Acc2 {_fmt(baseline.get('acc2'))}, MAE {_fmt(baseline.get('mae_bpm'))} BPM "
                  f"over {baseline.get('n', 0)} tracks."]
    if missing:
        lines += ["", "Listed in params but without a trained artifact (not ranked): " + ", ".join(f"`{m}`" for m in missing) + "."]
    lines += [
        "",
        "accuracy = headline track-level accuracy (± std over folds in k-fold mode); per-model detail",
        "(window level, mean vs vote, per-class precision/recall) is in `metrics/<model>.json`.",
        f"ECE = top-label expected calibration error ({ECE_BINS} bins), Brier = multiclass Brier score, both",
        "on the track-level (mean) probabilities: lower is better. Per-track predictions:",
        "`reports/predictions/<model>.csv`; `mgr compare` tests differences between commits.",
    ]
    if has_folds:
        lines += [
            "`folds` = test folds a row averages over: a model is scored on every fold it has an artifact",
            "for (classical models: refitted per fold by train-ml; deep models: `models/<name>/fold_<f>/`,",
            "one per fold, or only `train.fold` when `train.all_folds` is false).",
        ]
    lines += [
        "",
    ]
    return "\n".join(lines)


def plot_confusion_png(cm: np.ndarray, labels: Sequence[str], path: Any, title: str) -> None:
    """A confusion-matrix PNG (rows actual, columns predicted), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mgr.utils import atomic_path

    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 1.0 + 0.5 * k), dpi=100)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    top = cm.max() if cm.size else 0
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                        color="white" if cm[i, j] > top / 2 else "black", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


PREDICTION_COLUMNS = ("track_id", "fold", "true", "predicted")


def prediction_rows(pairs: Sequence[tuple], probs: Any, labels: Sequence[str], fold: int | None) -> list[dict[str, Any]]:
    """Rows of ``reports/predictions/<model>.csv`` for one scored fold: ``pairs`` are
    ``(track_id, true label, predicted label)`` aligned with the rows of ``probs`` (track-level
    mean probabilities, one column per label)."""
    P = np.asarray(probs, dtype=float)
    out = []
    for j, (t, a, b) in enumerate(pairs):
        row: dict[str, Any] = {"track_id": str(t), "fold": "" if fold is None else int(fold), "true": a, "predicted": b}
        for i, lab in enumerate(labels):
            row[f"p_{lab}"] = round(float(P[j, i]), _ROUND)
        out.append(row)
    return out


def write_predictions(rows: Sequence[dict[str, Any]], path: Any) -> None:
    """``track_id, fold, true, predicted, p_<label>...`` (sorted by fold, then track), the per-track
    file that ``mgr compare`` pairs across commits. Labels missing from a fold's model are 0."""
    import pandas as pd

    labels: list[str] = []
    for r in rows:
        labels += [k for k in r if k.startswith("p_") and k not in labels]
    cols = list(PREDICTION_COLUMNS) + labels
    df = pd.DataFrame(list(rows), columns=cols)
    for c in labels:
        df[c] = df[c].fillna(0.0)
    if len(df):
        df = df.sort_values(["fold", "track_id"], kind="stable", key=lambda c: c.map(
            lambda v: -1 if v == "" else int(v)) if c.name == "fold" else c.astype(str))
    df.to_csv(path, index=False, float_format="%.6g")


def run_evaluate(p: Any, *, root: str | Any = ".", log: Any = print, stores: Sequence[str] | None = None,
                 tempo_hook: Any = None) -> dict[str, Any]:
    """The evaluate stage: score every model of ``ml.models`` + ``dl.models`` that has an
    artifact on the test split, write ``metrics/<model>.json``, ``metrics/summary.json``,
    ``reports/leaderboard.md``, ``reports/confusion/<model>.csv`` (plot data),
    ``reports/predictions/<model>.csv`` (per test track: truth, prediction, probabilities; see
    :func:`write_predictions`) and ``reports/figures/confusion_<model>.png``. Returns the summary.

    ``stores`` are the spectrogram stores (relative to ``root``; default
    ``data/spectrograms.h5`` and ``data/spectrograms_musicnn.h5``): each deep model is scored on
    the one whose front end equals its card's (one store per front end).
    """
    import json
    from pathlib import Path

    import pandas as pd

    from mgr.errors import DataError
    from mgr.utils import atomic_path, write_json

    root = Path(root)
    ep = p.evaluate
    split_path = root / "data" / "split.csv"
    if not split_path.is_file():
        raise DataError(f"{split_path} not found (run the split stage first: dvc repro split)")
    split = pd.read_csv(split_path, dtype={"track_id": str})
    folds = split_folds(split)
    test_ids = {f: split_test_ids(split, f) for f in folds}
    models_dir = root / "models"
    from mgr.errors import ParamsError
    from mgr.params import DL_MODELS, classical_models, ml_instance

    names = [("classical", n) for n in classical_models(p)] + [("deep", n) for n in p.dl.models]
    found = {n: find_artifacts(models_dir, n, folds) for _, n in names}
    missing = [n for _, n in names if not found[n]]
    for n in missing:
        log(f"evaluate: {n}: no artifact in {models_dir / n} (not trained) - skipped")

    # the reference tempo and the DSP baseline (model independent, once per fold)
    tracks = None
    ds_dir = root / "data" / "raw" / p.data.source
    if (ds_dir / "tracks.csv").is_file():
        from mgr.datasets import load_tracks

        tracks = load_tracks(ds_dir)
    baseline: dict[int | None, dict[str, Any]] = {}
    if ep.tempo_baseline and tracks is not None and "tempo_bpm" in tracks and tracks["tempo_bpm"].notna().any():
        audio = {"sample_rate": p.audio.sample_rate, "offset_s": p.audio.offset_s,
                 "duration_s": p.audio.duration_s, "pad": p.audio.pad}
        for f in folds:
            baseline[f] = tempo_baseline(tracks, test_ids[f], audio, getattr(ep, "workers", 0))
            m = baseline[f]["metrics"]
            log(f"evaluate: tempo baseline{'' if f is None else f' fold {f}'}: Acc1 {m['acc1']:.3f} Acc2 {m['acc2']:.3f} ({m['n']} tracks)")

    table = None
    store_paths = [root / s for s in (stores or ("data/spectrograms.h5", "data/spectrograms_musicnn.h5"))]
    opened: dict[Path, Any] = {}

    def store_for(art: Any) -> Any:
        from mgr.spectrogram import SpectrogramStore

        for sp in store_paths:
            if sp not in opened and sp.is_file():
                opened[sp] = SpectrogramStore(sp)
            if sp in opened and not _same_frontend(dict(art.frontend), dict(opened[sp].frontend)):
                return opened[sp]
        present = [sp for sp in store_paths if sp.is_file()]
        if not present:
            raise DataError(f"{store_paths[0]} not found (run the spectrogram stage first)")
        return opened[present[0]]  # evaluate_deep names the front-end difference

    results: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    preds: dict[str, list[tuple]] = {}
    probas: dict[str, list[dict[str, Any]]] = {}  # per model: one row per test track and fold
    cms: dict[str, tuple[np.ndarray, list[str]]] = {}
    tempo_heads: dict[str, dict[str, float]] = {}  # model -> track -> BPM (tempo heads), for mgr.tempo.protocol
    try:
        for kind, name in names:
            if not found[name]:
                continue
            recs: dict[int | None, dict[str, Any]] = {}
            rows: list[tuple] = []
            prob_rows: list[dict[str, Any]] = []
            cm_sum = None
            labels: list[str] = []
            for f, d in sorted(found[name].items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
                if kind == "classical":
                    from mgr.models import classical

                    if table is None:
                        table = classical.load_table(root / "data" / "features.parquet")
                    art = classical.load(d)
                    res = evaluate_classical(art, table, test_ids[f])
                    y_pred_pairs = res["predictions"]
                    cm = res["confusion"]
                else:
                    from mgr.models import deep

                    art = deep.load(d)
                    res = evaluate_deep(art, store_for(art), test_ids[f], window_s=ep.window_s, overlap=ep.overlap,
                                        tag_threshold=ep.tag_threshold)
                    pred, y = res["_scores"][ep.aggregate]
                    lab = res["labels"]
                    y_pred_pairs = list(zip(res["_tids"], [lab[i] for i in y], [lab[i] for i in pred]))
                    cm = confusion_matrix(y, pred, len(lab))
                    tempo_heads.setdefault(name, {}).update(res.get("_tempo_est", {}))  # mgr.tempo.protocol
                    if "tempo" in res and f in baseline:
                        est = baseline[f]["estimates"]
                        # the baseline on exactly the tracks this model's tempo metrics cover
                        ref = res["_tempo_ref"]
                        res["tempo_baseline"] = tempo_metrics([est.get(t, np.nan) for t in ref], list(ref.values()))
                labels = res["labels"]
                cm_sum = cm if cm_sum is None else cm_sum + cm
                rows += [(t, "" if f is None else f, a, b) for t, a, b in y_pred_pairs]
                prob_rows += prediction_rows(y_pred_pairs, res["_probs"], res["labels"], f)
                recs[f] = _fold_record(res, ep.aggregate)
                tr = recs[f]["track"]
                log(f"evaluate: {name}{'' if f is None else f' fold {f}'}: accuracy {tr['accuracy']:.3f} "
                    f"macro-F1 {tr['macro_f1']:.3f} ({res['n_tracks']} tracks, {res['n_skipped']} skipped)")
            if kind == "classical" and folds != [None]:
                # folds without their own artifact: train-ml scored fold f's model on fold f's test
                # part with these same functions (same tracks, same rule); take those numbers.
                tm = root / "metrics" / "train-ml" / f"{name}.json"
                per = json.loads(tm.read_text()).get("per_fold", {}) if tm.is_file() else {}
                for f in folds:
                    if f in recs:
                        continue
                    t = (per.get(str(f)) or {}).get("test")
                    if t:
                        n = int(t.get("n", 0))
                        recs[f] = {"source": "train-ml", "n_tracks": len(test_ids[f]),
                                   "n_skipped": len(test_ids[f]) - n, "track": _headline(t)}
            results[name] = _r(_combine_folds(recs))
            results[name]["kind"] = kind
            results[name]["aggregate"] = ep.aggregate if kind == "deep" else "per-track features"
            kinds[name] = kind
            preds[name] = rows
            probas[name] = prob_rows
            cms[name] = (cm_sum, labels)
    finally:
        for st in opened.values():
            st.close()

    # ---- outputs
    metrics_dir = root / "metrics"
    keep = set(results)
    for old in metrics_dir.glob("*.json") if metrics_dir.is_dir() else []:
        # a model's metrics file from an earlier run (models no longer listed): it holds "kind"
        if old.stem not in keep and old.stem != "summary":
            try:
                ml_instance(old.stem)
                stale = True
            except ParamsError:
                stale = old.stem in DL_MODELS
            if not stale:
                try:
                    stale = json.loads(old.read_text()).get("kind") in ("classical", "deep")
                except (OSError, ValueError, AttributeError):
                    stale = False
            if stale:
                old.unlink()
    for name, m in results.items():
        write_json(metrics_dir / f"{name}.json", m)
    summary = {n: summary_entry(results[n]) for n in sorted(results)}
    write_json(metrics_dir / "summary.json", summary)
    bl_path = metrics_dir / "tempo_baseline.json"
    bl_summary = None
    if baseline:
        recs = {f: {"n_tracks": len(test_ids[f]), "n_skipped": len(b["failed"]), "track": {},
                    "tempo": b["metrics"]} for f, b in baseline.items()}
        bl = {"method": "librosa.feature.tempo (defaults) on the test tracks' audio",
              "failed": {t: r for b in baseline.values() for t, r in b["failed"].items()}}
        if folds == [None]:
            bl.update(_r(baseline[None]["metrics"]))
        else:
            bl.update({k: mean_std([b["metrics"][k] for b in baseline.values()])["mean"] for k in ("acc1", "acc2", "mae_bpm")})
            bl["n"] = sum(b["metrics"]["n"] for b in baseline.values())
            bl["per_fold"] = {str(f): r["tempo"] for f, r in recs.items()}
        bl = _r(bl)
        write_json(bl_path, bl)
        bl_summary = bl
    elif bl_path.exists():
        bl_path.unlink()
    if tempo_hook is not None:  # stages/evaluate.py: mgr.tempo.protocol.side_by_side (issue 14)
        tempo_hook(root, p, tracks, test_ids, baseline, tempo_heads, log=log)

    agg = "mean of window probabilities" if ep.aggregate == "mean" else "majority vote over windows"
    fold_txt = "holdout test split" if folds == [None] else f"{len(folds)}-fold cross-validation (mean ± std over the folds evaluated)"
    protocol = (f"Protocol: {fold_txt}; deep models: {ep.window_s:g} s segments with {ep.overlap:.0%} overlap, "
                f"track prediction = {agg}; classical models: one feature row per track.")
    with atomic_path(root / "reports" / "leaderboard.md") as tmp:
        tmp.write_text(leaderboard_markdown(summary, kinds, protocol=protocol, missing=missing, baseline=bl_summary))
    with atomic_path(root / "reports" / "confusion", is_dir=True) as tmp:
        for name, rows in preds.items():
            df = pd.DataFrame(rows, columns=["track_id", "fold", "actual", "predicted"])
            df.to_csv(tmp / f"{name}.csv", index=False)
    with atomic_path(root / "reports" / "predictions", is_dir=True) as tmp:
        for name, prow in probas.items():
            write_predictions(prow, tmp / f"{name}.csv")
    with atomic_path(root / "reports" / "figures", is_dir=True) as tmp:
        for name, (cm, labels) in cms.items():
            if cm is not None:
                plot_confusion_png(cm, labels, tmp / f"confusion_{name}.png", f"{name} (test, track level)")
    return summary
