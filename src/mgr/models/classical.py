"""Classical models on handcrafted features: training (with optional search and k folds) and
calibration. The estimators and the search are :mod:`mgr.models.estimators`; the artifact
(``models/<name>/``, :class:`~mgr.models.classical_artifact.ClassicalArtifact`, safe loading) is
:mod:`mgr.models.classical_artifact`.

Every model is fitted on integer labels ``0..n_classes-1`` indexing the sorted genre
vocabulary (the card's ``labels``), so ``predict_proba`` columns follow ``labels``.

Protocol (:func:`train`): rows are tracks of ``data/features.parquet`` (``track_id, split, genre``
[+ ``fold``] then float feature columns). Hyper-parameter search (``ml.search``: ``grid`` or
``random`` over ``ml.<name>.grid``) uses stratified ``ml.search_cv``-fold cross-validation on the
**train** rows only (each fold's own train part in k-fold mode), scored by balanced accuracy;
the best combination is refitted on all train rows; val and test rows are never seen by it. In
k-fold mode (a ``fold`` column) each fold f is trained on its own train part
(:func:`mgr.data.split.fold_split`: test = fold f, val = fold f+1, train = the rest) and scored on its
val and test parts; the metrics report every fold and the mean/std over folds. The saved
artifact is **fold 0's model** (trained on fold 0's train part only, as the holdout model is
trained on the holdout train part), so its test tracks - the ``split`` column's test part,
which is what ``evaluate`` scores - were never used for training, search or calibration.
Metrics are track level (rows of one track, if a feature set ever has several, are averaged).
**Calibration** (:func:`fit_calibration`): a temperature (:mod:`mgr.evaluation.calibration`) is
fitted per model on the track-level NLL of its validation rows (without any: on out-of-fold
probabilities of its train rows), stored in the card's ``calibration`` and applied by
:meth:`mgr.models.classical_artifact.ClassicalArtifact.predict_proba` (``calibrated=False``: the raw probabilities), so
evaluate and ``mgr predict`` see the same tempered probabilities; the argmax is unchanged.

In k-fold mode the per-fold test metrics are computed through the ONNX export (:func:`onnx_proba`),
as evaluate and ``mgr predict`` compute theirs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mgr.data.split import fold_split, n_folds
from mgr.errors import DataError, ParamsError
from mgr.evaluation.calibration import GRID, apply_temperature, calibration_record
from mgr.evaluation.metrics import aggregate_tracks, classification_metrics, mean_std
from mgr.features.tables import feature_names
from mgr.inference.runtime import OnnxModel
from mgr.io import n_workers
from mgr.models import distribution
from mgr.models.classical_artifact import ONNX_FILE, feature_columns, feature_matrix
from mgr.models.estimators import (
    REGISTRY,
    block_params,
    build,
    cap_calibration_folds,
    get_spec,
    proba,
    search,
    validate_grid,
)
from mgr.models.export import PROBA_OUTPUT, export_sklearn
from mgr.params import ML_MODELS, MlParams, ml_instance

HEADLINE = ("n", "accuracy", "balanced_accuracy", "macro_f1", "top3")


assert tuple(REGISTRY) == ML_MODELS, "REGISTRY and mgr.params.ML_MODELS must agree"


# ------------------------------------------------------------------------------ tables


def load_table(path: str | Path) -> Any:
    """Read ``features.parquet`` and check its layout."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found (run the features stage first: dvc repro features)")
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise DataError(f"{path} is not a readable parquet file ({type(e).__name__}: {e})") from None
    return check_table(df, str(path))


def check_table(df: Any, where: str = "features table") -> Any:
    missing = [c for c in ("track_id", "split", "genre") if c not in df.columns]
    if missing:
        raise DataError(f"{where} lacks column(s) {missing} (expected track_id, split, genre, [fold,] features)")
    if df.empty:
        raise DataError(f"{where} has no rows")
    bad = sorted(set(df["split"].astype(str)) - {"train", "val", "test"})
    if bad:
        raise DataError(f"{where}: unknown split value(s) {bad} (expected train, val, test)")
    feature_columns(df)
    df = df.copy()
    df["track_id"] = df["track_id"].astype(str)
    df["genre"] = df["genre"].astype(str)
    return df.sort_values("track_id", kind="stable").reset_index(drop=True)


def train_data_hash(df: Any, cols: Sequence[str]) -> str:
    """sha256 of the training rows: column names, track ids, genres and float64 feature values
    (rows in the given order). Same rows, same features -> same hash."""
    h = hashlib.sha256()
    h.update(json.dumps(list(cols)).encode())
    h.update(json.dumps(df["track_id"].astype(str).tolist()).encode())
    h.update(json.dumps(df["genre"].astype(str).tolist()).encode())
    h.update(np.ascontiguousarray(df.loc[:, list(cols)].to_numpy(dtype="<f8")).tobytes())
    return "sha256:" + h.hexdigest()


def fold_assignments(df: Any) -> list[tuple[int | None, np.ndarray]]:
    """``[(fold, split per row)]``: one entry per fold in k-fold mode, else ``[(None, split)]``."""
    if "fold" in df.columns:
        fold = df["fold"]
        if fold.notna().all() and (fold >= 0).all() and fold.nunique() >= 2:
            sdf = df[["track_id", "split"]].copy()
            sdf["fold"] = fold.astype(int).to_numpy()
            return [(f, fold_split(sdf, f)["split"].to_numpy()) for f in range(n_folds(sdf))]
    return [(None, df["split"].astype(str).to_numpy())]


# ------------------------------------------------------------------------------ training


def onnx_proba(model: Any, X: np.ndarray) -> np.ndarray:
    """``predict_proba`` of a fitted model through its ONNX export on onnxruntime (what
    :func:`mgr.models.classical_artifact.load` runs), exported to a temporary file."""
    import tempfile

    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    if len(X) == 0:
        return np.zeros((0, len(model.classes_)))
    with tempfile.TemporaryDirectory(prefix="mgr-onnx-") as d:
        path = Path(d) / ONNX_FILE
        export_sklearn(model, X.shape[1], path)
        out = OnnxModel(path, threads=1).run(X.astype(np.float32), [PROBA_OUTPUT])
    return np.asarray(out[PROBA_OUTPUT], dtype=np.float64)


def track_metrics(
    probs: np.ndarray, y: np.ndarray, track_ids: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Track-level metrics (rows of one track averaged) via :mod:`mgr.evaluation.metrics`."""
    tids = np.asarray(track_ids).astype(str)
    tracks, scores, pred = aggregate_tracks(probs, tids, "mean")
    first = {t: int(v) for t, v in zip(tids[::-1], np.asarray(y)[::-1])}
    y_track = np.array([first[t] for t in tracks], dtype=np.int64)
    return classification_metrics(y_track, scores, list(labels), k=3, y_pred=pred)


def headline(m: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if m is None else {k: m[k] for k in HEADLINE}


@dataclass
class FitResult:
    """One fitted model (one fold, or the holdout split) and its scores."""

    fold: int | None
    model: Any
    params: dict[str, Any]
    search: dict[str, Any] | None
    n_train: int
    val: dict[str, Any] | None
    test: dict[str, Any] | None
    train_hash: str
    #: the temperature fitted for this model (:func:`fit_calibration`), ``None`` when none could be
    calibration: dict[str, Any] | None = None


def fit(name: str, X: np.ndarray, y: np.ndarray, ml: MlParams, *, n_jobs: int = 1) -> tuple[Any, dict, dict | None]:
    """Search (if configured) on (X, y), then fit the final model on all of (X, y)."""
    block, report = search(name, X, y, ml, n_jobs=n_jobs)
    model = build(name, ml, n_jobs=n_jobs, block=block)
    cap_calibration_folds(name, model, y)
    model.fit(X, y)
    return model, block_params(block), report


def _track_labels(y: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
    """The label of each track, in ``np.unique(track_ids)`` order."""
    tids = np.asarray(track_ids).astype(str)
    first = {tid: int(v) for tid, v in zip(tids[::-1], np.asarray(y)[::-1])}
    return np.array([first[tid] for tid in np.unique(tids)], dtype=np.int64)


def fit_calibration(model: Any, X_val: np.ndarray, y_val: np.ndarray, tids_val: np.ndarray, X_tr: np.ndarray,
                    y_tr: np.ndarray, tids_tr: np.ndarray, *, name: str, seed: int = 0) -> dict[str, Any] | None:
    """Temperature scaling of ``model``'s probabilities (:mod:`mgr.evaluation.calibration`), fitted
    on the track-level NLL of the **validation** rows; with none, on **out-of-fold** probabilities
    of the train rows (stratified k-fold, k = min(5, rarest genre's train tracks), a clone of the
    model refitted per fold). ``None`` when neither is possible (a genre with one train track) or
    the calibration tracks are perfectly separated (NLL -> 0 as T -> 0: no optimum)."""
    if len(y_val):
        probs, y, tids, what = proba(model, X_val), y_val, tids_val, "the validation tracks"
    else:
        from sklearn.base import clone
        from sklearn.model_selection import StratifiedKFold

        k = min(5, int(np.bincount(y_tr).min()) if len(y_tr) else 0)
        if k < 2:
            return None
        probs = np.zeros((len(y_tr), int(y_tr.max()) + 1))
        try:
            for a, b in StratifiedKFold(k, shuffle=True, random_state=seed).split(X_tr, y_tr):
                m = clone(model)
                cap_calibration_folds(name, m, y_tr[a])
                m.fit(X_tr[a], y_tr[a])
                probs[np.ix_(b, np.asarray(m.classes_, dtype=np.int64))] = proba(m, X_tr[b])
        except (ValueError, DataError):  # a fold too small for the model's own inner folds
            return None
        y, tids, what = y_tr, tids_tr, f"{k}-fold out-of-fold probabilities of the train tracks (no validation tracks)"
    rec = calibration_record(probs, _track_labels(y, tids), np.asarray(tids).astype(str))
    if rec["val_nll_after"] < 1e-6 or not round(float(GRID[0]), 6) < rec["temperature"] < round(float(GRID[-1]), 6):
        # perfectly separated calibration tracks (e.g. a handful of them): the NLL keeps falling
        # as T -> 0, there is no optimum, so no temperature is applied
        return None
    rec["method"] = f"temperature scaling (track-level NLL on {what})"
    return rec


@dataclass
class Outcome:
    """What :func:`train` returns: the artifact's model and card, and the metrics file content."""

    model: Any
    card: dict[str, Any]
    metrics: dict[str, Any]
    folds: list[FitResult] = field(default_factory=list)
    sample: np.ndarray | None = None  # a few train rows: the ONNX export's parity check in save()


def train(
    name: str,
    table: Any,
    ml: MlParams,
    *,
    feature_set: str,
    workers: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> Outcome:
    """Train ``name`` on a features table (holdout or every fold), score val (and test per fold
    in k-fold mode), and build the card and the metrics for the artifact (fold 0's model)."""
    # an ml.models entry `<model>-<set>` trains <model> on that feature set's columns only
    algo, feature_set = ml_instance(name, feature_set)
    spec = get_spec(algo)
    validate_grid(algo, ml)
    table = check_table(table)
    cols = feature_columns(table)
    explicit = "-" in name  # `<model>-<set>`: that set's columns are required
    try:
        want = feature_names(feature_set)
    except ParamsError:
        if explicit:
            raise
        want = [None]  # a user's own table under a name of theirs: all its columns
    missing = [c for c in want if c not in cols]
    if not missing:
        cols = want  # the table may hold more sets (features.set and features.embedding)
    elif explicit:
        raise DataError(f"the features table lacks {len(missing)} {feature_set} column(s) (e.g. {missing[0]!r}); "
                        f"rerun the features stage (dvc repro features)")
    # else: a table of other columns (a user's own features, a subset) -> all of them, named in the card
    labels = sorted(table["genre"].unique().tolist())
    lab_idx = {g: i for i, g in enumerate(labels)}
    if len(labels) < 2:
        raise DataError(f"need at least 2 genres to train a classifier, found {labels}")
    X = feature_matrix(table, cols)
    y = table["genre"].map(lab_idx).to_numpy(dtype=np.int64)
    tids = table["track_id"].to_numpy()
    n_jobs = n_workers(workers)
    kfold = "fold" in table.columns and len(fold_assignments(table)) > 1

    results: list[FitResult] = []
    for fold, parts in fold_assignments(table):
        tag = f"fold {fold}" if fold is not None else "holdout"
        tr, va, te = parts == "train", parts == "val", parts == "test"
        if not tr.any():
            hint = " (k-fold mode needs split.k >= 3: fold f is test, fold f+1 val, the rest train)" if kfold else ""
            raise DataError(f"{tag}: no train tracks{hint}")
        absent = [labels[i] for i in sorted(set(range(len(labels))) - set(np.unique(y[tr]).tolist()))]
        if absent:
            raise DataError(f"{tag}: genre(s) {absent} have no train tracks; cannot train {name}")
        model, params, report = fit(algo, X[tr], y[tr], ml, n_jobs=n_jobs)
        cal = fit_calibration(model, X[va], y[va], tids[va], X[tr], y[tr], tids[tr], name=algo, seed=ml.seed)
        temp = cal["temperature"] if cal else 1.0
        val = track_metrics(apply_temperature(proba(model, X[va]), temp), y[va], tids[va], labels) if va.any() else None
        # k-fold test metrics are what evaluate reports for the folds it has no artifact of:
        # computed through the ONNX export and the fold's temperature, as evaluate and predict do
        test = (track_metrics(apply_temperature(onnx_proba(model, X[te]), temp), y[te], tids[te], labels)
                if (kfold and te.any()) else None)
        res = FitResult(fold, model, params, report, int(tr.sum()), val, test, train_data_hash(table[tr], cols), cal)
        results.append(res)
        msg = f"{name} {tag}: {int(tr.sum())} train tracks"
        if val is not None:
            msg += f", val acc {val['accuracy']:.3f} bal {val['balanced_accuracy']:.3f} f1 {val['macro_f1']:.3f}"
        if test is not None:
            msg += f", test acc {test['accuracy']:.3f}"
        log(msg)

    art = results[0]
    metrics: dict[str, Any] = {"folds": len(results), "n_train": art.n_train, "val": headline(art.val)}
    cv: dict[str, Any] | None = None
    if kfold:
        cv = {"k": len(results)}
        for part in ("val", "test"):
            per = [getattr(r, part) for r in results]
            if all(p is None for p in per):
                continue
            stats = {k: mean_std([p[k] for p in per if p is not None]) for k in HEADLINE[1:]}
            metrics[part] = {k: s["mean"] for k, s in stats.items()}
            metrics[f"{part}_std"] = {k: s["std"] for k, s in stats.items()}
            cv[part] = stats
        metrics["per_fold"] = {
            str(r.fold): {"n_train": r.n_train, "val": headline(r.val), "test": headline(r.test)} for r in results
        }
    if art.search is not None:
        metrics["search_best_cv_score"] = art.search["best_score"]

    card = {
        "name": name,
        "kind": "classical",
        "estimator": spec.description,
        "labels": labels,
        "feature_set": feature_set,
        "feature_columns": cols,
        "params": {
            **art.params,
            "seed": ml.seed,
            "search": ml.search,
            "search_cv": ml.search_cv,
            "search_iter": ml.search_iter,
            "grid": getattr(ml, algo).grid,
        },
        "search": art.search,
        "train_data_hash": art.train_hash,
        "n_train": art.n_train,
        "trained_on": (
            "fold 0's train part (k-fold mode: the saved model is fold 0's; cv holds all folds)"
            if kfold
            else "the train part of the split"
        ),
        "val_metrics": art.val,
        # applied to the ONNX model's probabilities by ClassicalArtifact.predict_proba (evaluate, predict)
        "calibration": art.calibration,
        "cv": cv,
    }
    first_tr = fold_assignments(table)[0][1] == "train"
    # predict's out-of-distribution check: the training features' statistics (mgr.models.distribution)
    card["distribution"] = distribution.fit(X[first_tr], X[fold_assignments(table)[0][1] == "val"], kind="features")
    return Outcome(art.model, card, metrics, results, sample=X[first_tr][:32])


