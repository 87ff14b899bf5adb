"""Classical models on handcrafted features: training (with optional search and k folds) and
calibration. The estimators and the search are :mod:`mgr.models.estimators`; the artifact
(``models/<name>/``, :class:`~mgr.models.classical_artifact.ClassicalArtifact`, safe loading) is
:mod:`mgr.models.classical_artifact`.

Every model is fitted on integer labels ``0..n_classes-1`` indexing the sorted genre
vocabulary (the card's ``labels``), so ``predict_proba`` columns follow ``labels``.

Protocol (:func:`train`): rows are tracks of ``data/features.parquet`` (``track_id, split, genre``
[+ ``fold``] then float feature columns). Each fold f (k-fold mode, a ``fold`` column:
:func:`mgr.data.split.fold_split`, test = fold f, val = fold f+1, train = the rest) or the holdout
split trains one model; the test tracks never reach it.

* ``ml.validation: inner_cv`` (default; "no wasted data"): the model trains on **every non-test
  track** (train + val parts). Validation scores (the metrics' ``val``, the card's
  ``val_metrics``), the temperature and the embedding models' feature-set choice come from
  out-of-fold probabilities of stratified ``ml.inner_cv``-fold cross-validation over those tracks
  (:func:`inner_folds`, :func:`oof_proba`; a fresh model per inner fold, never a test track).
* ``ml.validation: holdout``: the model trains on the train part; val scores and calibrates.

Hyper-parameter search (``ml.search``: ``grid`` or ``random`` over ``ml.<name>.grid``) uses
stratified ``ml.search_cv``-fold cross-validation on the model's training rows, scored by balanced
accuracy, then refits the best combination on all of them. **Feature-set choice** (the
``<model>-<embedding>`` models of ``ml.embedding_models``, :func:`_select`): among the
``ml.embedding_candidates`` combinations (embedding, its taggram, the handcrafted sets), the one
with the highest inner-CV track-level balanced accuracy (ties: lower NLL, then the earlier
candidate), recorded in the card's ``feature_selection``. ``fusion`` is the stacked model of
:mod:`mgr.models.stacking`. The metrics report every fold (``n_train``, ``n_test``, the feature
set, val and test) and the mean/std over folds. The saved artifact is **fold 0's model**, so its
test tracks - the ``split`` column's test part, which is what ``evaluate`` scores - were never
used for training, search, selection or calibration. Metrics are track level (rows of one track,
if a feature set ever has several, are averaged). **Calibration**: a temperature
(:mod:`mgr.evaluation.calibration`) fitted on the track-level NLL of the out-of-fold (inner_cv) or
validation (holdout; without any: out-of-fold, :func:`fit_calibration`) probabilities, stored in
the card's ``calibration`` and applied by
:meth:`mgr.models.classical_artifact.ClassicalArtifact.predict_proba` (``calibrated=False``: the raw
probabilities), so evaluate and ``mgr predict`` see the same tempered probabilities; the argmax is
unchanged.

In k-fold mode the per-fold test metrics are computed through the ONNX export (:func:`onnx_proba`),
as evaluate and ``mgr predict`` compute theirs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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
from mgr.models.classical_artifact import ONNX_FILE, feature_columns, feature_matrix, settle
from mgr.models.estimators import (
    REGISTRY,
    block_layout,
    block_params,
    block_weights,
    build,
    cap_calibration_folds,
    get_spec,
    proba,
    search,
    validate_grid,
)
from mgr.models.export import PROBA_OUTPUT, export_sklearn
from mgr.params import (
    ML_MODELS,
    STACKED_MODELS,
    FeaturesParams,
    MlParams,
    ml_instance,
    parse_feature_sets,
    resolve_blocks,
)

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
    #: the feature set this fold's model trained on and the candidates' inner-CV scores
    feature_set: str | None = None
    columns: list[str] = field(default_factory=list)
    selection: dict[str, Any] | None = None
    n_test: int = 0


@dataclass(frozen=True)
class Candidate:
    """A feature set a model may train on: its name, its table columns and how to build the model."""

    feature_set: str | None
    columns: list[str]
    blocks: str | None = None  # the ml.embedding_candidates entry it came from


def _make(algo: str, cand: Candidate, ml: MlParams, features: FeaturesParams, n_jobs: int, block: Any = None) -> Any:
    """An unfitted model of ``algo`` on ``cand``'s columns (per-block standardised)."""
    if algo in STACKED_MODELS:
        from mgr.models.stacking import build_fusion

        return build_fusion(ml, features, cand.columns, n_jobs=n_jobs, block=block)
    return build(algo, ml, n_jobs=n_jobs, block=block, layout=block_layout(cand.columns), n_features=len(cand.columns))


def _cap(algo: str, model: Any, y: np.ndarray) -> None:
    if algo in STACKED_MODELS:
        from mgr.models.stacking import cap_folds

        cap_folds(model, y)
    else:
        cap_calibration_folds(algo, model, y)


def fit(name: str, X: np.ndarray, y: np.ndarray, ml: MlParams, *, n_jobs: int = 1, cand: Candidate | None = None,
        features: FeaturesParams | None = None) -> tuple[Any, dict, dict | None]:
    """Search (if configured) on (X, y), then fit the final model on all of (X, y); its linear
    coefficients are settled to float32 precision at once (:func:`classical_artifact.settle`), so
    every number computed from it -- metrics, calibration, the saved files -- is the same on
    every machine."""
    features = features or FeaturesParams()
    if name in STACKED_MODELS:
        block, report = ml.fusion, None
    else:
        layout = block_layout(cand.columns) if cand is not None else None
        block, report = search(name, X, y, ml, n_jobs=n_jobs, layout=layout)
    if cand is not None:
        model = _make(name, cand, ml, features, n_jobs, block)
    else:
        model = build(name, ml, n_jobs=n_jobs, block=block)
    _cap(name, model, y)
    model.fit(X, y)
    return settle(model), block_params(block), report


def inner_folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Stratified ``min(k, rarest genre's count)``-fold splits of the rows (``None`` below 2)."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    k = min(int(k), int(counts[counts > 0].min()) if len(y) else 0)
    if k < 2:
        return None
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def oof_proba(make: Callable[[], Any], algo: str, X: np.ndarray, y: np.ndarray, n_classes: int,
              folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """Out-of-fold probabilities of the rows: per inner fold a fresh model (``make()``) fitted on
    the other folds; ``None`` when a fold is too small for the model's own inner folds."""
    probs = np.zeros((len(y), n_classes))
    try:
        for a, b in folds:
            m = make()
            _cap(algo, m, y[a])
            m.fit(X[a], y[a])
            probs[np.ix_(b, np.asarray(m.classes_, dtype=np.int64))] = proba(m, X[b])
    except (ValueError, DataError):
        return None
    return probs


def _track_labels(y: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
    """The label of each track, in ``np.unique(track_ids)`` order."""
    tids = np.asarray(track_ids).astype(str)
    first = {tid: int(v) for tid, v in zip(tids[::-1], np.asarray(y)[::-1])}
    return np.array([first[tid] for tid in np.unique(tids)], dtype=np.int64)


def _temperature(probs: np.ndarray, y: np.ndarray, tids: np.ndarray, what: str) -> dict[str, Any] | None:
    rec = calibration_record(probs, _track_labels(y, tids), np.asarray(tids).astype(str))
    if rec["val_nll_after"] < 1e-6 or not round(float(GRID[0]), 6) < rec["temperature"] < round(float(GRID[-1]), 6):
        # perfectly separated calibration tracks (e.g. a handful of them): the NLL keeps falling
        # as T -> 0, there is no optimum, so no temperature is applied
        return None
    rec["method"] = f"temperature scaling (track-level NLL on {what})"
    return rec


def fit_calibration(model: Any, X_val: np.ndarray, y_val: np.ndarray, tids_val: np.ndarray, X_tr: np.ndarray,
                    y_tr: np.ndarray, tids_tr: np.ndarray, *, name: str, seed: int = 0) -> dict[str, Any] | None:
    """Temperature scaling of ``model``'s probabilities (:mod:`mgr.evaluation.calibration`), fitted
    on the track-level NLL of the **validation** rows; with none, on **out-of-fold** probabilities
    of the train rows (stratified k-fold, k = min(5, rarest genre's train tracks), a clone of the
    model refitted per fold). ``None`` when neither is possible (a genre with one train track) or
    the calibration tracks are perfectly separated (NLL -> 0 as T -> 0: no optimum)."""
    if len(y_val):
        return _temperature(proba(model, X_val), y_val, tids_val, "the validation tracks")
    from sklearn.base import clone

    folds = inner_folds(y_tr, 5, seed) if len(y_tr) else None
    if folds is None:
        return None
    probs = oof_proba(lambda: clone(model), name, X_tr, y_tr, int(y_tr.max()) + 1, folds)
    if probs is None:
        return None
    return _temperature(probs, y_tr, tids_tr, f"{len(folds)}-fold out-of-fold probabilities of the train tracks "
                                              "(no validation tracks)")


def _oof_scores(probs: np.ndarray, y: np.ndarray, tids: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    m = track_metrics(probs, y, tids, labels)
    _, scores, _ = aggregate_tracks(probs, np.asarray(tids).astype(str), "mean")
    yt = _track_labels(y, tids)
    nll = float(-np.mean(np.log(np.clip(scores[np.arange(len(yt)), yt], 1e-12, None))))
    return {"balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"], "nll": nll}


def _select(algo: str, cands: list[Candidate], X_of: Callable[[Candidate], np.ndarray], y: np.ndarray,
            tids: np.ndarray, labels: Sequence[str], ml: MlParams, features: FeaturesParams, n_jobs: int,
            folds: list | None) -> tuple[Candidate, dict[str, Any] | None, dict[str, np.ndarray]]:
    """The candidate with the best inner-CV score on these (non-test) rows: highest mean
    track-level balanced accuracy of the out-of-fold probabilities, ties -> lower NLL, then the
    earlier candidate. Returns it, the ``feature_selection`` record and the out-of-fold
    probabilities computed (by feature set)."""
    if len(cands) == 1:
        return cands[0], None, {}
    if folds is None:
        raise DataError(f"{algo}: choosing among {len(cands)} feature sets needs at least 2 tracks per genre")
    rows, oof = [], {}
    for c in cands:
        p = oof_proba(lambda c=c: _make(algo, c, ml, features, n_jobs), algo, X_of(c), y, len(labels), folds)
        if p is None:
            raise DataError(f"{algo}: too few tracks per genre to score the feature set candidates by inner CV")
        oof[c.feature_set] = p
        rows.append({"blocks": c.blocks, "feature_set": c.feature_set, "n_features": len(c.columns),
                     **{f"inner_cv_{k}": v for k, v in _oof_scores(p, y, tids, labels).items()}})
    best = min(range(len(rows)), key=lambda i: (-round(rows[i]["inner_cv_balanced_accuracy"], 12),
                                                round(rows[i]["inner_cv_nll"], 12), i))
    rec = {"method": (f"{len(folds)}-fold stratified inner cross-validation over the {len(y)} non-test tracks; "
                      "highest track-level balanced accuracy of the out-of-fold probabilities, ties -> lower NLL, "
                      "then the earlier candidate (ml.embedding_candidates order); test tracks never scored"),
           "chosen": rows[best]["feature_set"], "candidates": rows}
    return cands[best], rec, oof


def _candidates(name: str, algo: str, feature_set: str | None, table_cols: list[str], ml: MlParams,
                features: FeaturesParams) -> list[Candidate]:
    """The feature sets ``name`` may train on (several only for the embedding models)."""
    if algo in STACKED_MODELS:
        from mgr.models.stacking import fusion_feature_set

        specs = [(None, fusion_feature_set(ml, features))]
    elif "-" in name and feature_set == features.embedding and algo in ml.embedding_models:
        specs = [(c, resolve_blocks(c, features)) for c in ml.embedding_candidates]
        specs = list({fs: (c, fs) for c, fs in reversed(specs) if fs}.values())[::-1]  # first of each set
    else:
        specs = [(None, feature_set)]
    out = []
    for blocks, fs in specs:
        try:
            want = feature_names(fs)
        except ParamsError:
            if "-" in name or algo in STACKED_MODELS:
                raise
            want = [None]  # a user's own table under a name of theirs: all its columns
        missing = [c for c in want if c not in table_cols]
        if not missing:
            out.append(Candidate(fs, list(want), blocks))
        elif "-" in name or algo in STACKED_MODELS:
            raise DataError(f"the features table lacks {len(missing)} {fs} column(s) (e.g. {missing[0]!r}); "
                            f"rerun the features stage (dvc repro features)")
        else:  # a table of other columns (a user's own features, a subset) -> all of them, named in the card
            out.append(Candidate(fs, list(table_cols), blocks))
    return out


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
    features: FeaturesParams | None = None,
    workers: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> Outcome:
    """Train ``name`` on a features table (holdout or every fold), validate it (inner CV over the
    non-test tracks, or the val part with ``ml.validation: holdout``), score test per fold in
    k-fold mode, and build the card and the metrics for the artifact (fold 0's model).
    ``features``: the ``features`` params (``features.embedding`` for the embedding candidates and
    the fusion's blocks; default: ``features.set = feature_set``)."""
    # an ml.models entry `<model>-<set>` trains <model> on that feature set's columns only
    algo, feature_set = ml_instance(name, feature_set)
    if features is None:
        try:
            features = replace(FeaturesParams(), set="+".join(parse_feature_sets(feature_set)))
        except ParamsError:
            features = FeaturesParams()
    if algo in STACKED_MODELS:
        if ml.search != "none" and ml.fusion.grid:
            raise ParamsError("params: ml.fusion.grid: fusion is not searched (its base models use ml.<model>; "
                              "leave ml.fusion.grid empty)")
        description = "StackingClassifier: " + ", ".join(b[0] for b in _fusion_bases(ml, features)) + \
            " -> LogisticRegression on their out-of-fold probabilities"
    else:
        description = get_spec(algo).description
        validate_grid(algo, ml)
    table = check_table(table)
    cands = _candidates(name, algo, feature_set, feature_columns(table), ml, features)
    labels = sorted(table["genre"].unique().tolist())
    lab_idx = {g: i for i, g in enumerate(labels)}
    if len(labels) < 2:
        raise DataError(f"need at least 2 genres to train a classifier, found {labels}")
    Xs = {c.feature_set: feature_matrix(table, c.columns) for c in cands}
    y = table["genre"].map(lab_idx).to_numpy(dtype=np.int64)
    tids = table["track_id"].to_numpy()
    n_jobs = n_workers(workers)
    kfold = "fold" in table.columns and len(fold_assignments(table)) > 1
    inner = ml.validation == "inner_cv"

    results: list[FitResult] = []
    for fold, parts in fold_assignments(table):
        tag = f"fold {fold}" if fold is not None else "holdout"
        te = parts == "test"
        tr = ~te if inner else parts == "train"  # inner_cv: every non-test track trains the model
        va = np.zeros_like(te) if inner else parts == "val"
        if not tr.any():
            hint = (" (k-fold mode with ml.validation: holdout needs split.k >= 3: fold f is test, fold f+1 val, "
                    "the rest train)") if kfold else ""
            raise DataError(f"{tag}: no train tracks{hint}")
        absent = [labels[i] for i in sorted(set(range(len(labels))) - set(np.unique(y[tr]).tolist()))]
        if absent:
            raise DataError(f"{tag}: genre(s) {absent} have no train tracks; cannot train {name}")
        folds = inner_folds(y[tr], ml.inner_cv, ml.seed)
        cand, selection, oof = _select(algo, cands, lambda c: Xs[c.feature_set][tr], y[tr], tids[tr], labels, ml,
                                       features, n_jobs, folds)
        X = Xs[cand.feature_set]
        model, params, report = fit(algo, X[tr], y[tr], ml, n_jobs=n_jobs, cand=cand, features=features)
        if inner:
            # out-of-fold probabilities over the training tracks, with the hyper-parameters chosen:
            # the validation scores and the temperature (reused from the selection when unsearched)
            probs = oof.get(cand.feature_set) if report is None else None
            if probs is None and folds is not None:
                block = _params_block(algo, ml, params)
                probs = oof_proba(lambda: _make(algo, cand, ml, features, n_jobs, block), algo, X[tr], y[tr],
                                  len(labels), folds)
            cal = None if probs is None else _temperature(
                probs, y[tr], tids[tr], f"{len(folds)}-fold inner cross-validation: out-of-fold probabilities of "
                                        f"the {int(tr.sum())} non-test tracks")
            temp = cal["temperature"] if cal else 1.0
            val = None if probs is None else track_metrics(apply_temperature(probs, temp), y[tr], tids[tr], labels)
        else:
            cal = fit_calibration(model, X[va], y[va], tids[va], X[tr], y[tr], tids[tr], name=algo, seed=ml.seed) \
                if algo not in STACKED_MODELS or va.any() else None
            temp = cal["temperature"] if cal else 1.0
            val = track_metrics(apply_temperature(proba(model, X[va]), temp), y[va], tids[va], labels) if va.any() else None
        # k-fold test metrics are what evaluate reports for the folds it has no artifact of:
        # computed through the ONNX export and the fold's temperature, as evaluate and predict do
        test = (track_metrics(apply_temperature(onnx_proba(model, X[te]), temp), y[te], tids[te], labels)
                if (kfold and te.any()) else None)
        res = FitResult(fold, model, params, report, int(tr.sum()), val, test, train_data_hash(table[tr], cand.columns),
                        cal, cand.feature_set, cand.columns, selection, int(te.sum()))
        results.append(res)
        msg = f"{name} {tag}: {int(tr.sum())} train tracks"
        if selection is not None:
            msg += f", feature set {cand.feature_set} (inner CV)"
        if val is not None:
            msg += (f", {'inner-CV' if inner else 'val'} acc {val['accuracy']:.3f} bal {val['balanced_accuracy']:.3f} "
                    f"f1 {val['macro_f1']:.3f}")
        if test is not None:
            msg += f", test acc {test['accuracy']:.3f}"
        log(msg)

    art = results[0]
    validation = (f"inner_cv: out-of-fold probabilities of {ml.inner_cv}-fold stratified cross-validation over "
                  "each fold's non-test tracks (train + val parts), all of which train the final model"
                  if inner else "holdout: the val part (the model trains on the train part only)")
    metrics: dict[str, Any] = {"folds": len(results), "n_train": art.n_train, "validation": validation,
                               "feature_set": art.feature_set, "val": headline(art.val)}
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
        str(r.fold if r.fold is not None else "holdout"): {
            "n_train": r.n_train, "n_test": r.n_test, "feature_set": r.feature_set,
            "val": headline(r.val), "test": headline(r.test)} for r in results
    }
    if art.search is not None:
        metrics["search_best_cv_score"] = art.search["best_score"]
    if art.selection is not None:
        metrics["feature_selection"] = {"chosen": art.selection["chosen"], "candidates": {
            r["feature_set"]: r["inner_cv_balanced_accuracy"] for r in art.selection["candidates"]}}

    part = "non-test tracks (train + val parts)" if inner else "train part"
    card = {
        "name": name,
        "kind": "classical",
        "estimator": description,
        "labels": labels,
        "feature_set": art.feature_set,
        "feature_columns": art.columns,
        "feature_blocks": None if algo in STACKED_MODELS or block_layout(art.columns) is None else {
            b: {"columns": len(ix), "weight": w} for (b, ix), w in
            zip(block_layout(art.columns), block_weights(block_layout(art.columns)).values())},
        "feature_selection": art.selection,
        "params": {
            **art.params,
            "seed": ml.seed,
            "search": ml.search,
            "search_cv": ml.search_cv,
            "search_iter": ml.search_iter,
            "grid": getattr(ml, algo).grid,
            "validation": ml.validation,
            "inner_cv": ml.inner_cv,
        },
        "search": art.search,
        "train_data_hash": art.train_hash,
        "n_train": art.n_train,
        "trained_on": (
            f"fold 0's {part} (k-fold mode: the saved model is fold 0's; cv holds all folds)"
            if kfold
            else f"the {part} of the split"
        ),
        "validation": validation,
        "val_metrics": art.val,
        # applied to the ONNX model's probabilities by ClassicalArtifact.predict_proba (evaluate, predict)
        "calibration": art.calibration,
        "cv": cv,
    }
    first = fold_assignments(table)[0][1]
    first_tr = first != "test" if inner else first == "train"
    X_first = Xs[art.feature_set]
    # predict's out-of-distribution check: the statistics of the features the model reads, over its
    # training tracks (mgr.models.distribution); a held-out val part also sets the threshold
    card["distribution"] = distribution.fit(X_first[first_tr], None if inner else X_first[first == "val"], kind="features")
    return Outcome(art.model, card, metrics, results, sample=X_first[first_tr][:32])


def _fusion_bases(ml: MlParams, features: FeaturesParams) -> list[tuple[str, str, str]]:
    from mgr.models.stacking import base_models

    return base_models(ml, features)


def _params_block(algo: str, ml: MlParams, params: dict[str, Any]) -> Any:
    """The ``ml.<algo>`` block with the searched ``params`` (the fusion's own block as is)."""
    if algo in STACKED_MODELS:
        return ml.fusion
    return replace(getattr(ml, algo), **{k: v for k, v in params.items() if k != "grid"})
