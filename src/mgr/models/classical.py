"""Classical models on handcrafted features: a registry, training (with optional search and
k folds), and safe artifacts.

Registry (:data:`REGISTRY`, name -> :class:`ModelSpec`; each configured by ``ml.<name>``):

``svm``
    ``CalibratedClassifierCV(Pipeline[StandardScaler -> SVC(kernel="rbf", C, gamma)],
    method="temperature", cv=calibration_cv, ensemble=False)``: **one** SVC fitted on all
    training rows; probabilities ``softmax(beta * decision_function)`` with the single
    temperature parameter fitted on ``calibration_cv``-fold out-of-fold decision values. The
    scaling is monotone, so the predicted genre is the plain SVC's decision. (The former
    ``method="sigmoid"`` ensemble averaged ``calibration_cv`` SVCs each fitted on a fraction of
    the rows, and per-class sigmoids re-rank classes: both cost accuracy on small training sets;
    ``SVC(probability=True)`` is deprecated in scikit-learn 1.9.)
``xgboost``
    ``xgboost.XGBClassifier`` (``tree_method="hist"``) on label-encoded genres.
``logreg``
    ``Pipeline[StandardScaler -> LogisticRegression(C, max_iter)]``.
``random_forest``
    ``RandomForestClassifier(n_estimators, max_depth, min_samples_leaf)``.

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
:meth:`ClassicalArtifact.predict_proba` (``calibrated=False``: the raw probabilities), so
evaluate and ``mgr predict`` see the same tempered probabilities; the argmax is unchanged.

Artifacts (``models/<name>/``): ``model.json`` (the card), ``model.onnx`` (skl2onnx /
onnxmltools via :func:`mgr.models.export.export_sklearn`: float32 input ``input``, output
``probabilities``) and the native model, ``model.skops`` (scikit-learn, via :mod:`skops.io`) or
``model.ubj`` (XGBoost's own UBJSON), kept for inspection and retraining. :func:`load` opens the
ONNX file (sha256 checked against the card's ``onnx_sha256``) on onnxruntime: that is what
evaluate scores and ``mgr predict`` runs, without importing scikit-learn or XGBoost. In k-fold
mode the per-fold test metrics are computed through the same ONNX export (:func:`onnx_proba`).
:func:`load_native` reads the native file; nothing is ever unpickled: it refuses a plain
pickle, a foreign file, or a skops file holding any type outside :data:`TRUSTED_TYPES` (skops'
own safe defaults plus the few scikit-learn internals our models need) before anything in it is
constructed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mgr.cards import read_card as read_any_card
from mgr.data.split import fold_split, n_folds
from mgr.errors import ArtifactError, DataError, ParamsError
from mgr.evaluation.calibration import GRID, apply_temperature, calibration_record
from mgr.evaluation.metrics import aggregate_tracks, classification_metrics, mean_std
from mgr.features.tables import feature_names, feature_set_of
from mgr.inference.runtime import OnnxModel
from mgr.io import atomic_path, file_hash, library_versions, n_workers, write_json
from mgr.models.export import PROBA_OUTPUT, export_sklearn
from mgr.params import ML_MODELS, MlParams, ml_instance, params_from_dict

META_COLUMNS = ("track_id", "split", "genre", "fold")
CARD_FILE = "model.json"
ONNX_FILE = "model.onnx"
SKOPS_FILE = "model.skops"
XGB_FILE = "model.ubj"
MODEL_FILES = (SKOPS_FILE, XGB_FILE)
HEADLINE = ("n", "accuracy", "balanced_accuracy", "macro_f1", "top3")
CARD_KEYS = ("name", "kind", "labels", "feature_set", "feature_columns", "model_file")

# Types outside skops' built-in safe set that our estimators contain. This list lives in the
# code, never in the artifact: a file that needs anything else is refused, whatever it claims.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.calibration._TemperatureScaling",
    "sklearn.tree._tree.Tree",
)

_PICKLE_MAGIC = (b"\x80",)  # protocol 2+ pickles (and joblib dumps) start with PROTO


# ------------------------------------------------------------------------------ registry
def _build_svm(p: Any, seed: int, n_jobs: int) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    svc = SVC(kernel="rbf", C=p.C, gamma=p.gamma, random_state=seed)
    pipe = Pipeline([("scale", StandardScaler()), ("svc", svc)])
    # ensemble=False: one SVC fitted on all rows; temperature scaling (one parameter, fitted on
    # out-of-fold decision values) is monotone, so the argmax is the SVC's own decision
    return CalibratedClassifierCV(pipe, method="temperature", cv=p.calibration_cv, ensemble=False)


def _build_xgboost(p: Any, seed: int, n_jobs: int) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(
        n_estimators=p.n_estimators,
        max_depth=p.max_depth,
        learning_rate=p.learning_rate,
        subsample=p.subsample,
        colsample_bytree=p.colsample_bytree,
        tree_method="hist",
        random_state=seed,
        n_jobs=n_jobs,
    )


def _build_logreg(p: Any, seed: int, n_jobs: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(C=p.C, max_iter=p.max_iter, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("logreg", clf)])


def _build_random_forest(p: Any, seed: int, n_jobs: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=p.n_estimators,
        max_depth=p.max_depth,
        min_samples_leaf=p.min_samples_leaf,
        random_state=seed,
        n_jobs=n_jobs,
    )


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: ``build(params_block, seed, n_jobs)`` -> an unfitted estimator."""

    name: str
    build: Callable[[Any, int, int], Any]
    fmt: str  # "skops" | "xgboost"
    description: str


REGISTRY: dict[str, ModelSpec] = {
    "svm": ModelSpec("svm", _build_svm, "skops", "StandardScaler + SVC(rbf) fitted on all rows, temperature-scaled on out-of-fold decisions"),
    "xgboost": ModelSpec("xgboost", _build_xgboost, "xgboost", "XGBClassifier (hist) on label-encoded genres"),
    "logreg": ModelSpec("logreg", _build_logreg, "skops", "StandardScaler + LogisticRegression"),
    "random_forest": ModelSpec("random_forest", _build_random_forest, "skops", "RandomForestClassifier"),
}
assert tuple(REGISTRY) == ML_MODELS, "REGISTRY and mgr.params.ML_MODELS must agree"


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise ParamsError(f"unknown classical model {name!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def block_params(block: Any) -> dict[str, Any]:
    """A params block as a plain mapping without its search ``grid``."""
    return {k: v for k, v in dataclasses.asdict(block).items() if k != "grid"}


def build(name: str, ml: MlParams, *, n_jobs: int = 1, block: Any | None = None) -> Any:
    """An unfitted estimator for ``name`` configured by ``ml.<name>`` (or ``block``)."""
    spec = get_spec(name)
    return spec.build(block if block is not None else getattr(ml, name), ml.seed, n_jobs)


# ------------------------------------------------------------------------ search space
def _block_with(name: str, block: Any, overrides: dict[str, Any]) -> Any:
    """``block`` with ``overrides`` applied, validated exactly like params.yaml values."""
    values = {**dataclasses.asdict(block), **overrides}
    return getattr(params_from_dict({"ml": {name: values}}).ml, name)


def validate_grid(name: str, ml: MlParams) -> dict[str, list]:
    """Check ``ml.<name>.grid``: known keys, non-empty lists, every value valid for its key."""
    block = getattr(ml, name)
    allowed = [f.name for f in dataclasses.fields(block) if f.name != "grid"]
    grid = block.grid or {}
    for key, values in grid.items():
        if key not in allowed:
            raise ParamsError(f"params: ml.{name}.grid: unknown key {key!r} (allowed: {', '.join(allowed)})")
        if not isinstance(values, list) or not values:
            raise ParamsError(f"params: ml.{name}.grid.{key} must be a non-empty list of values, got {values!r}")
        for v in values:
            try:
                _block_with(name, block, {key: v})
            except ParamsError as e:
                raise ParamsError(f"params: ml.{name}.grid.{key}: {v!r} is not a valid value ({e})") from None
    return grid


def candidates(name: str, ml: MlParams) -> list[dict[str, Any]]:
    """The parameter combinations the search tries (empty when there is no search):
    scikit-learn's ``ParameterGrid`` (``grid``) or ``ParameterSampler`` (``random``: ``search_iter``
    combinations drawn without replacement, seeded by ``ml.seed``)."""
    grid = validate_grid(name, ml)
    if ml.search == "none" or not grid:
        return []
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    full = ParameterGrid(grid)
    if ml.search == "random" and len(full) > ml.search_iter:
        return [dict(c) for c in ParameterSampler(grid, n_iter=ml.search_iter, random_state=ml.seed)]
    return [dict(c) for c in full]


def _cap_calibration_folds(name: str, model: Any, y: np.ndarray) -> None:
    """svm's calibration folds: no more than the rarest genre has train tracks."""
    cv = model.get_params().get("cv")
    if isinstance(cv, int):
        counts = np.bincount(y)
        rarest = int(counts[counts > 0].min())
        if rarest < 2:
            raise DataError(f"{name}: a genre has a single train track; its probability calibration needs at "
                            f"least 2 per genre")
        if rarest < cv:
            model.set_params(cv=rarest)


def _candidate_estimator() -> type:
    """A scikit-learn estimator for one candidate (``overrides`` of the ``ml.<name>`` block), so
    that ``GridSearchCV`` clones, fits and scores candidates like any estimator."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Candidate(ClassifierMixin, BaseEstimator):
        def __init__(self, name: str = "logreg", ml: Any = None, n_jobs: int = 1, overrides: dict | None = None):
            self.name, self.ml, self.n_jobs, self.overrides = name, ml, n_jobs, overrides

        def fit(self, X: np.ndarray, y: np.ndarray) -> Any:
            block = _block_with(self.name, getattr(self.ml, self.name), dict(self.overrides or {}))
            self.model_ = build(self.name, self.ml, n_jobs=self.n_jobs, block=block)
            _cap_calibration_folds(self.name, self.model_, y)
            self.model_.fit(X, y)
            self.classes_ = self.model_.classes_
            return self

        def predict(self, X: np.ndarray) -> np.ndarray:
            return self.classes_[_proba(self.model_, X).argmax(axis=1)]

    return Candidate


def search(
    name: str, X: np.ndarray, y: np.ndarray, ml: MlParams, *, n_jobs: int = 1
) -> tuple[Any, dict[str, Any] | None]:
    """Cross-validated search on (X, y) - the train rows only - with scikit-learn's
    ``GridSearchCV`` over :func:`candidates` (stratified ``ml.search_cv`` folds, shuffled with
    ``ml.seed``; balanced accuracy; ties -> the first candidate). Returns the best params block
    (``ml.<name>`` itself when there is nothing to search) and a report."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    block = getattr(ml, name)
    combos = candidates(name, ml)
    if not combos:
        return block, None
    counts = np.bincount(y)
    if counts[counts > 0].min() < ml.search_cv:
        raise DataError(
            f"ml.search_cv={ml.search_cv} needs at least {ml.search_cv} train tracks per genre "
            f"(the smallest genre has {int(counts[counts > 0].min())}); lower ml.search_cv"
        )
    cv = StratifiedKFold(n_splits=ml.search_cv, shuffle=True, random_state=ml.seed)
    gs = GridSearchCV(_candidate_estimator()(name, ml, n_jobs), {"overrides": combos}, scoring="balanced_accuracy",
                      cv=cv, refit=False, error_score="raise")
    gs.fit(X, y)
    res = gs.cv_results_
    results = [{"params": dict(c), "mean": float(m), "std": float(s)}
               for c, m, s in zip(res["param_overrides"], res["mean_test_score"], res["std_test_score"])]
    best_i = int(np.argmax([r["mean"] for r in results]))  # ties -> first candidate
    report = {
        "method": ml.search,
        "cv": ml.search_cv,
        "scoring": "balanced_accuracy",
        "n_candidates": len(results),
        "best_params": results[best_i]["params"],
        "best_score": results[best_i]["mean"],
        "results": results,
    }
    return _block_with(name, block, results[best_i]["params"]), report


# ------------------------------------------------------------------------------ tables
def feature_columns(df: Any) -> list[str]:
    """The feature columns of a features table, in order (everything but the meta columns)."""
    cols = [str(c) for c in df.columns if c not in META_COLUMNS]
    if not cols:
        raise DataError("the features table has no feature columns")
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    bad = [c for c in cols if not is_numeric_dtype(df[c]) or is_bool_dtype(df[c])]
    if bad:
        raise DataError(f"feature columns must be numeric; not numeric: {bad[:5]}")
    return cols


def feature_matrix(df: Any, cols: Sequence[str]) -> np.ndarray:
    """``df[cols]`` as a float64 array; non-finite values are a DataError naming the columns."""
    X = df.loc[:, list(cols)].to_numpy(dtype=np.float64)
    finite = np.isfinite(X)
    if not finite.all():
        where = [cols[j] for j in np.nonzero(~finite.all(axis=0))[0]]
        raise DataError(
            f"{int((~finite).sum())} non-finite feature values (NaN/inf) in columns {where[:5]}"
            + (f" (+{len(where) - 5} more)" if len(where) > 5 else "")
        )
    return X


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
def _proba(model: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_proba(X), dtype=np.float64)


def onnx_proba(model: Any, X: np.ndarray) -> np.ndarray:
    """``predict_proba`` of a fitted model through its ONNX export on onnxruntime (what
    :func:`load` runs), exported to a temporary file."""
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
    _cap_calibration_folds(name, model, y)
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
        probs, y, tids, what = _proba(model, X_val), y_val, tids_val, "the validation tracks"
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
                _cap_calibration_folds(name, m, y_tr[a])
                m.fit(X_tr[a], y_tr[a])
                probs[np.ix_(b, np.asarray(m.classes_, dtype=np.int64))] = _proba(m, X_tr[b])
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
        val = track_metrics(apply_temperature(_proba(model, X[va]), temp), y[va], tids[va], labels) if va.any() else None
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
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    first_tr = fold_assignments(table)[0][1] == "train"
    return Outcome(art.model, card, metrics, results, sample=X[first_tr][:32])


# ------------------------------------------------------------------------------ artifacts
def _versions() -> dict[str, str]:
    return library_versions("mgr", "scikit-learn", "xgboost", "skops", "numpy", "pandas")


def _is_xgboost(model: Any) -> bool:
    return type(model).__module__.startswith("xgboost")


def _synthetic_sample(model: Any, n_features: int, n: int = 16) -> np.ndarray:
    """Rows for the export parity check when no training rows are given: standard normal in
    the space of the pipeline's scaler when there is one (its public ``mean_``/``scale_``)."""
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((n, n_features))
    for est in [model, *[s[1] for s in getattr(model, "steps", [])],
                *[getattr(getattr(model, "estimator", None), "steps", [(None, None)])[0][1]]]:
        mean, scale = getattr(est, "mean_", None), getattr(est, "scale_", None)
        if mean is not None and scale is not None and np.shape(mean) == (n_features,):
            return Z * np.asarray(scale, np.float64) + np.asarray(mean, np.float64)
    return Z


def save(model: Any, model_dir: str | Path, card: dict[str, Any], *, sample: np.ndarray | None = None) -> dict[str, Any]:
    """Write ``model_dir`` atomically: the native model (``model.skops`` or ``model.ubj``), its
    ONNX export ``model.onnx`` (checked against ``model.predict_proba`` on ``sample`` rows, or on
    synthetic rows, within 1e-4) and ``model.json``. Returns the card as written (``model_file``,
    ``model_sha256``, ``onnx_file``, ``onnx_sha256``, ``versions`` filled in)."""
    import skops.io as sio

    missing = [k for k in ("name", "labels", "feature_columns") if k not in card]
    if missing:
        raise ValueError(f"card lacks {missing}")  # programming error
    card = {"kind": "classical", **card}
    card.setdefault("versions", _versions())
    card.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    card.setdefault("feature_set", None)
    n_features = len(card["feature_columns"])
    if sample is None:
        sample = _synthetic_sample(model, n_features)
    with atomic_path(model_dir, is_dir=True) as tmp:
        if _is_xgboost(model):
            card["model_file"] = XGB_FILE
            model.save_model(str(tmp / XGB_FILE))
        else:
            card["model_file"] = SKOPS_FILE
            sio.dump(model, tmp / SKOPS_FILE)
            extra = sorted(set(sio.get_untrusted_types(file=tmp / SKOPS_FILE)) - set(TRUSTED_TYPES))
            if extra:  # never write an artifact that load_native() would refuse
                raise ArtifactError(f"model {card['name']!r} holds types not in TRUSTED_TYPES: {extra}")
        export_sklearn(model, n_features, tmp / ONNX_FILE, sample=sample)
        card["model_sha256"] = file_hash(tmp / card["model_file"])
        card["onnx_file"] = ONNX_FILE
        card["onnx_sha256"] = file_hash(tmp / ONNX_FILE)
        write_json(tmp / CARD_FILE, card)
    return card


def _check_hash(path: Path, expected: str | None) -> None:
    """The card's ``model_sha256`` (when present) must match the model file."""
    if expected is not None and file_hash(path) != expected:
        raise ArtifactError(f"{path} does not match the sha256 in its model card (modified or corrupt); refusing to load it")


def _load_skops(path: Path, sha256: str | None = None) -> Any:
    import skops.io as sio

    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(_PICKLE_MAGIC):
        raise ArtifactError(f"{path} is a plain pickle, not a skops file; refusing to load it (a pickle can run code)")
    if not zipfile.is_zipfile(path):
        raise ArtifactError(f"{path} is not a skops file (not a zip archive); refusing to load it")
    try:
        found = sio.get_untrusted_types(file=path)
    except Exception as e:
        raise ArtifactError(f"{path} is not a readable skops file ({type(e).__name__}: {e})") from None
    bad = sorted(set(found) - set(TRUSTED_TYPES))
    if bad:
        raise ArtifactError(
            f"{path} contains types that are not trusted: {', '.join(bad)}; refusing to load it "
            "(tampered or foreign artifact)"
        )
    _check_hash(path, sha256)
    try:
        return sio.load(path, trusted=list(TRUSTED_TYPES))
    except Exception as e:
        raise ArtifactError(f"{path} could not be loaded safely ({type(e).__name__}: {e})") from None


def _load_xgboost(path: Path, sha256: str | None = None) -> Any:
    from xgboost import XGBClassifier

    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(_PICKLE_MAGIC):
        raise ArtifactError(f"{path} is a plain pickle, not an XGBoost model; refusing to load it (a pickle can run code)")
    if not head.startswith(b"{"):  # UBJSON and JSON models both open an object
        raise ArtifactError(f"{path} is not an XGBoost UBJSON/JSON model; refusing to load it")
    _check_hash(path, sha256)
    model = XGBClassifier()
    try:
        model.load_model(str(path))
    except Exception as e:
        raise ArtifactError(f"{path} is not a valid XGBoost model ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return model


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """The validated ``model.json`` of a classical artifact."""
    card = read_any_card(model_dir, kind="classical")
    path = Path(model_dir) / CARD_FILE
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise ArtifactError(f"{path} lacks {missing}")
    for key in ("labels", "feature_columns"):
        v = card[key]
        if not isinstance(v, list) or not v or not all(isinstance(s, str) for s in v):
            raise ArtifactError(f"{path}: {key} must be a non-empty list of strings")
    if card["model_file"] not in MODEL_FILES:
        raise ArtifactError(f"{path}: model_file must be one of {MODEL_FILES}, got {card['model_file']!r}")
    return card


def _known_feature_column(column: str) -> bool:
    try:
        feature_set_of(column)
        return True
    except DataError:
        return False


@dataclass
class ClassicalArtifact:
    """A classical model's card plus its ONNX session (:class:`mgr.inference.runtime.OnnxModel`):
    what evaluate scores and ``mgr predict`` runs. No scikit-learn/XGBoost import."""

    model_dir: Path
    card: dict[str, Any]
    model: Any  # mgr.inference.runtime.OnnxModel

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def labels(self) -> list[str]:
        return list(self.card["labels"])

    @property
    def feature_columns(self) -> list[str]:
        return list(self.card["feature_columns"])

    @property
    def feature_set(self) -> str | None:
        return self.card.get("feature_set")

    def matrix(self, X: Any) -> np.ndarray:
        """The model's input matrix from a DataFrame (columns checked against the card, reordered
        to the card's order; meta columns ignored) or an array (width checked)."""
        cols = self.feature_columns
        if hasattr(X, "columns"):
            have = [str(c) for c in X.columns if c not in META_COLUMNS]
            missing = [c for c in cols if c not in set(have)]
            # columns of other known feature sets are fine: one table holds every set the models use
            extra = [c for c in have if c not in set(cols) and not _known_feature_column(c)]
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"missing {missing[:5]}" + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
                if extra:
                    parts.append(f"unexpected {extra[:5]}" + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else ""))
                raise ArtifactError(
                    f"feature columns do not match model {self.name!r} (trained on feature set "
                    f"{self.feature_set!r}, {len(cols)} columns): {'; '.join(parts)}"
                )
            return feature_matrix(X, cols)
        A = np.asarray(X, dtype=np.float64)
        if A.ndim == 1:
            A = A[None, :]
        if A.ndim != 2 or A.shape[1] != len(cols):
            raise ArtifactError(
                f"model {self.name!r} expects {len(cols)} feature columns "
                f"(feature set {self.feature_set!r}), got an array of shape {A.shape}"
            )
        if not np.isfinite(A).all():
            raise DataError(f"{int((~np.isfinite(A)).sum())} non-finite feature values (NaN/inf)")
        return A

    @property
    def temperature(self) -> float:
        """The card's ``calibration.temperature`` (fitted at train time), 1.0 when it has none."""
        return float((self.card.get("calibration") or {}).get("temperature", 1.0))

    def predict_proba(self, X: Any, calibrated: bool = True) -> np.ndarray:
        """``(n, n_classes)`` class probabilities (float64) from the ONNX model, tempered by the
        card's temperature (``calibrated=False``: the model's raw probabilities); columns follow
        :attr:`labels`. Non-finite outputs raise :class:`mgr.inference.runtime.InferenceError`."""
        A = self.matrix(X)
        if len(A) == 0:
            return np.zeros((0, len(self.labels)))
        out = np.asarray(self.model.run(A.astype(np.float32), ["probabilities"])["probabilities"], dtype=np.float64)
        return self.calibrate(out) if calibrated else out

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        """Raw probabilities (``predict_proba(calibrated=False)``) -> the calibrated ones (float64)."""
        t = self.temperature
        return apply_temperature(probs, t) if t != 1.0 else np.asarray(probs, dtype=np.float64)

    def predict(self, X: Any) -> list[str]:
        """The most probable genre per row."""
        labels = self.labels
        return [labels[i] for i in self.predict_proba(X).argmax(axis=1)]


def load(model_dir: str | Path, *, threads: int | None = None) -> ClassicalArtifact:
    """Open ``models/<name>/`` for inference: the card, then ``model.onnx`` (sha256 checked
    against the card's ``onnx_sha256`` before onnxruntime reads it; the native model file's
    sha256 too, when present, so a tampered artifact is refused as a whole). Input width and
    class count are checked against the card. Imports neither scikit-learn nor XGBoost."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    if not card.get("onnx_file") or not card.get("onnx_sha256"):
        raise ArtifactError(f"{model_dir}: the card names no ONNX model (onnx_file/onnx_sha256); retrain the model")
    if card["onnx_file"] != ONNX_FILE:
        raise ArtifactError(f"{model_dir / CARD_FILE}: onnx_file must be {ONNX_FILE!r}, got {card['onnx_file']!r}")
    native = model_dir / card["model_file"]
    if native.is_file():
        _check_hash(native, card.get("model_sha256"))
    model = OnnxModel(model_dir / ONNX_FILE, sha256=card["onnx_sha256"], threads=threads)
    path = model.path
    if "probabilities" not in model.output_names:
        raise ArtifactError(f"{path}: no 'probabilities' output (has {model.output_names})")
    n_in, n_cols = model.input_shape[-1], len(card["feature_columns"])
    if len(model.input_shape) != 2 or n_in != n_cols:
        raise ArtifactError(f"{path}: the model takes {n_in} features but the card lists {n_cols}")
    n_out, n = model.output_shape("probabilities")[-1], len(card["labels"])
    if n_out is not None and n_out != n:
        raise ArtifactError(f"{path}: the model has {n_out} classes but the card lists {n} labels")
    return ClassicalArtifact(model_dir, card, model)


def load_native(model_dir: str | Path) -> Any:
    """The fitted scikit-learn / XGBoost estimator of ``models/<name>/`` (for inspection or
    retraining; evaluate and predict use :func:`load`). Safe: no pickle; skops with
    :data:`TRUSTED_TYPES` only; the file's sha256 must match the card's ``model_sha256``."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    path = model_dir / card["model_file"]
    if not path.exists():
        raise ArtifactError(f"{path} not found (the card names it as the model file)")
    sha = card.get("model_sha256")
    model = _load_xgboost(path, sha) if card["model_file"] == XGB_FILE else _load_skops(path, sha)
    n = len(card["labels"])
    if _is_xgboost(model):
        got = int(getattr(model, "n_classes_", 0) or 0)
    else:
        if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
            raise ArtifactError(f"{path} does not hold a fitted classifier")
        classes = np.asarray(model.classes_)
        got = len(classes) if np.array_equal(classes, np.arange(len(classes))) else -1
    if got != n:
        raise ArtifactError(f"{path}: the model has {got} classes but the card lists {n} labels")
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None and int(n_in) != len(card["feature_columns"]):
        raise ArtifactError(
            f"{path}: the model takes {int(n_in)} features but the card lists {len(card['feature_columns'])}"
        )
    return model
