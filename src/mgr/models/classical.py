"""Classical models on handcrafted features: a registry, training (with optional search and
k folds), and safe artifacts.

Registry (:data:`REGISTRY`, name -> :class:`ModelSpec`; each configured by ``ml.<name>``):

``svm``
    ``CalibratedClassifierCV(Pipeline[StandardScaler -> SVC(kernel="rbf", C, gamma)],
    method="sigmoid", cv=calibration_cv)``: probabilities by Platt scaling on internal folds
    (``SVC(probability=True)`` is deprecated in scikit-learn 1.9).
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
(:func:`mgr.split.fold_split`: test = fold f, val = fold f+1, train = the rest) and scored on its
val and test parts; the metrics report every fold and the mean/std over folds. The saved
artifact is **fold 0's model** (trained on fold 0's train part only, as the holdout model is
trained on the holdout train part), so its test tracks - the ``split`` column's test part,
which is what ``evaluate`` scores - were never used for training, search or calibration.
Metrics are track level (rows of one track, if a feature set ever has several, are averaged).

Artifacts (``models/<name>/``): ``model.json`` (the card) plus ``model.skops`` (scikit-learn,
via :mod:`skops.io`) or ``model.ubj`` (XGBoost's own UBJSON). Nothing is ever unpickled:
:func:`load` refuses a plain pickle, a foreign file, or a skops file holding any type outside
:data:`TRUSTED_TYPES` (skops' own safe defaults plus the few scikit-learn internals our models
need) before anything in it is constructed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mgr.errors import ArtifactError, DataError, ParamsError
from mgr.params import ML_MODELS, MlParams, params_from_dict

META_COLUMNS = ("track_id", "split", "genre", "fold")
CARD_FILE = "model.json"
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
    return CalibratedClassifierCV(pipe, method="sigmoid", cv=p.calibration_cv)


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
    "svm": ModelSpec("svm", _build_svm, "skops", "StandardScaler + SVC(rbf), sigmoid-calibrated probabilities"),
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
    """The parameter combinations the search tries (empty when there is no search)."""
    grid = validate_grid(name, ml)
    if ml.search == "none" or not grid:
        return []
    keys = sorted(grid)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]
    if ml.search == "random" and len(combos) > ml.search_iter:
        pick = np.random.default_rng(ml.seed).choice(len(combos), size=ml.search_iter, replace=False)
        combos = [combos[i] for i in sorted(pick)]
    return combos


def search(
    name: str, X: np.ndarray, y: np.ndarray, ml: MlParams, *, n_jobs: int = 1
) -> tuple[Any, dict[str, Any] | None]:
    """Cross-validated search on (X, y) - the train rows only. Returns the best params block
    (``ml.<name>`` itself when there is nothing to search) and a report."""
    from sklearn.model_selection import StratifiedKFold

    from mgr.evaluation import balanced_accuracy

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
    folds = list(cv.split(X, y))
    results = []
    for combo in combos:
        cand = _block_with(name, block, combo)
        scores = []
        for tr, te in folds:
            model = build(name, ml, n_jobs=n_jobs, block=cand)
            model.fit(X[tr], y[tr])
            pred = _proba(model, X[te]).argmax(axis=1)
            scores.append(balanced_accuracy(y[te], pred, int(y.max()) + 1))
        results.append({"params": combo, "mean": float(np.mean(scores)), "std": float(np.std(scores))})
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
            from mgr.split import fold_split, n_folds

            sdf = df[["track_id", "split"]].copy()
            sdf["fold"] = fold.astype(int).to_numpy()
            return [(f, fold_split(sdf, f)["split"].to_numpy()) for f in range(n_folds(sdf))]
    return [(None, df["split"].astype(str).to_numpy())]


# ------------------------------------------------------------------------------ training
def _proba(model: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_proba(X), dtype=np.float64)


def track_metrics(
    probs: np.ndarray, y: np.ndarray, track_ids: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Track-level metrics (rows of one track averaged) via :mod:`mgr.evaluation`."""
    from mgr.evaluation import aggregate_tracks, classification_metrics

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


def fit(name: str, X: np.ndarray, y: np.ndarray, ml: MlParams, *, n_jobs: int = 1) -> tuple[Any, dict, dict | None]:
    """Search (if configured) on (X, y), then fit the final model on all of (X, y)."""
    block, report = search(name, X, y, ml, n_jobs=n_jobs)
    model = build(name, ml, n_jobs=n_jobs, block=block)
    model.fit(X, y)
    return model, block_params(block), report


@dataclass
class Outcome:
    """What :func:`train` returns: the artifact's model and card, and the metrics file content."""

    model: Any
    card: dict[str, Any]
    metrics: dict[str, Any]
    folds: list[FitResult] = field(default_factory=list)


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
    from mgr.utils import n_workers

    spec = get_spec(name)
    validate_grid(name, ml)
    table = check_table(table)
    cols = feature_columns(table)
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
        model, params, report = fit(name, X[tr], y[tr], ml, n_jobs=n_jobs)
        val = track_metrics(_proba(model, X[va]), y[va], tids[va], labels) if va.any() else None
        test = track_metrics(_proba(model, X[te]), y[te], tids[te], labels) if (kfold and te.any()) else None
        res = FitResult(fold, model, params, report, int(tr.sum()), val, test, train_data_hash(table[tr], cols))
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
        from mgr.evaluation import mean_std

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
            "grid": getattr(ml, name).grid,
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
        "cv": cv,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return Outcome(art.model, card, metrics, results)


# ------------------------------------------------------------------------------ artifacts
def _versions() -> dict[str, str]:
    from mgr.utils import library_versions

    return library_versions("mgr", "scikit-learn", "xgboost", "skops", "numpy", "pandas")


def _is_xgboost(model: Any) -> bool:
    return type(model).__module__.startswith("xgboost")


def save(model: Any, model_dir: str | Path, card: dict[str, Any]) -> dict[str, Any]:
    """Write ``model_dir`` atomically: the model (``model.skops`` or ``model.ubj``) and
    ``model.json``; for ``svm``/``logreg`` also ``model_light.npz`` (:func:`export_light`, hash
    in the card's ``light_sha256``). Returns the card as written (``model_file``, ``versions``
    filled in)."""
    import skops.io as sio

    from mgr.utils import atomic_path, file_hash, write_json

    missing = [k for k in ("name", "labels", "feature_columns") if k not in card]
    if missing:
        raise ValueError(f"card lacks {missing}")  # programming error
    card = {"kind": "classical", **card}
    card.setdefault("versions", _versions())
    card.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    card.setdefault("feature_set", None)
    with atomic_path(model_dir, is_dir=True) as tmp:
        if _is_xgboost(model):
            card["model_file"] = XGB_FILE
            model.save_model(str(tmp / XGB_FILE))
        else:
            card["model_file"] = SKOPS_FILE
            sio.dump(model, tmp / SKOPS_FILE)
            extra = sorted(set(sio.get_untrusted_types(file=tmp / SKOPS_FILE)) - set(TRUSTED_TYPES))
            if extra:  # never write an artifact that load() would refuse
                raise ArtifactError(f"model {card['name']!r} holds types not in TRUSTED_TYPES: {extra}")
            light = export_light(model)  # svm/logreg: a NumPy-only form for fast `mgr predict`
            card.pop("light_file", None)
            card.pop("light_sha256", None)
            if light is not None:
                np.savez(tmp / LIGHT_FILE, **light)
                card["light_file"] = LIGHT_FILE
                card["light_sha256"] = file_hash(tmp / LIGHT_FILE)
        card["model_sha256"] = file_hash(tmp / card["model_file"])
        write_json(tmp / CARD_FILE, card)
    return card


def _check_hash(path: Path, expected: str | None) -> None:
    """The card's ``model_sha256`` (when present) must match the model file."""
    from mgr.utils import file_hash

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
    from mgr.cards import read_card as read_any_card

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


@dataclass
class ClassicalArtifact:
    """A loaded classical model and its card."""

    model_dir: Path
    card: dict[str, Any]
    model: Any

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
            extra = [c for c in have if c not in set(cols)]
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

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n, n_classes)`` class probabilities; columns follow :attr:`labels`."""
        return _proba(self.model, self.matrix(X))

    def predict(self, X: Any) -> list[str]:
        """The most probable genre per row."""
        labels = self.labels
        return [labels[i] for i in self.predict_proba(X).argmax(axis=1)]


def load(model_dir: str | Path) -> ClassicalArtifact:
    """Load ``models/<name>/`` safely (no pickle; skops with :data:`TRUSTED_TYPES` only)."""
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
    return ClassicalArtifact(model_dir, card, model)


# ------------------------------------------------------------------- light inference form
# ``mgr predict`` should not pay ~2 s importing scikit-learn/skops for a few dot products, so
# :func:`save` also writes the fitted numbers of ``svm`` and ``logreg`` as a plain ``.npz``
# (``np.savez``; read with ``allow_pickle=False``) whose sha256 the card records as
# ``light_sha256``. :class:`LightModel` evaluates ``predict_proba`` from it with NumPy only,
# equal to scikit-learn's within 1e-6 (tested). Other models (xgboost, random_forest) have none.
LIGHT_FILE = "model_light.npz"
LIGHT_FORMAT = 1


def export_light(model: Any) -> dict[str, np.ndarray] | None:
    """The arrays of the light form of a fitted ``svm``/``logreg`` model, or ``None`` when the
    model is of another structure (then only the skops file exists)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    def scaler_arrays(sc: Any, d: int) -> tuple[np.ndarray, np.ndarray]:
        mean = np.asarray(sc.mean_, np.float64) if sc.with_mean and sc.mean_ is not None else np.zeros(d)
        scale = np.asarray(sc.scale_, np.float64) if sc.with_std and sc.scale_ is not None else np.ones(d)
        return mean, scale

    def two_step(pipe: Any, cls: type) -> tuple[Any, Any] | None:
        if not isinstance(pipe, Pipeline) or len(pipe.steps) != 2:
            return None
        sc, est = pipe.steps[0][1], pipe.steps[1][1]
        if type(sc) is not StandardScaler or type(est) is not cls:
            return None
        return sc, est

    if isinstance(model, Pipeline):
        parts = two_step(model, LogisticRegression)
        if parts is None:
            return None
        sc, lr = parts
        mean, scale = scaler_arrays(sc, lr.coef_.shape[1])
        return {
            "format": np.array(LIGHT_FORMAT), "kind": np.array("logreg"),
            "n_classes": np.array(len(lr.classes_)), "mean": mean, "scale": scale,
            "coef": np.asarray(lr.coef_, np.float64), "intercept": np.asarray(lr.intercept_, np.float64),
        }
    if type(model) is CalibratedClassifierCV and model.method == "sigmoid":
        n_classes = len(model.classes_)
        out: dict[str, np.ndarray] = {
            "format": np.array(LIGHT_FORMAT), "kind": np.array("svm"), "n_classes": np.array(n_classes),
            "n_members": np.array(len(model.calibrated_classifiers_)),
        }
        for m, cc in enumerate(model.calibrated_classifiers_):
            parts = two_step(cc.estimator, SVC)
            if parts is None or parts[1].kernel != "rbf" or cc.method != "sigmoid":
                return None
            sc, svc = parts
            if svc.decision_function_shape != "ovr" or getattr(svc, "break_ties", False):
                return None
            mean, scale = scaler_arrays(sc, svc.support_vectors_.shape[1])
            # where this member's classes sit among all classes (a fold may miss a class)
            pos = np.searchsorted(np.asarray(cc.classes), np.asarray(svc.classes_))
            out.update({
                f"m{m}_mean": mean, f"m{m}_scale": scale,
                f"m{m}_sv": np.asarray(svc.support_vectors_, np.float64),
                f"m{m}_dual_coef": np.asarray(svc._dual_coef_, np.float64),  # libsvm's own signs
                f"m{m}_intercept": np.asarray(svc._intercept_, np.float64),
                f"m{m}_n_support": np.asarray(svc._n_support, np.int64),
                f"m{m}_gamma": np.array(float(svc._gamma)),
                f"m{m}_pos": pos.astype(np.int64),
                f"m{m}_a": np.array([float(c.a_) for c in cc.calibrators]),
                f"m{m}_b": np.array([float(c.b_) for c in cc.calibrators]),
            })
        return out
    return None


def _expit(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


@dataclass
class LightModel:
    """``predict_proba`` of a saved ``svm``/``logreg`` from its light ``.npz`` (NumPy only)."""

    arrays: dict[str, np.ndarray]

    @property
    def kind(self) -> str:
        return str(self.arrays["kind"])

    @property
    def n_classes(self) -> int:
        return int(self.arrays["n_classes"])

    @property
    def n_features(self) -> int:
        return int(self.arrays["mean" if self.kind == "logreg" else "m0_mean"].shape[0])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if X.shape[1] != self.n_features:
            raise ArtifactError(f"the light model takes {self.n_features} features, got {X.shape[1]}")
        a = self.arrays
        if self.kind == "logreg":
            d = ((X - a["mean"]) / a["scale"]) @ a["coef"].T + a["intercept"]
            if self.n_classes == 2:  # sklearn: expit of the one decision value
                p1 = _expit(d[:, 0])
                return np.stack([1.0 - p1, p1], axis=1)
            d = d - d.max(axis=1, keepdims=True)
            e = np.exp(d)
            return e / e.sum(axis=1, keepdims=True)
        n = self.n_classes
        total = np.zeros((X.shape[0], n))
        members = int(a["n_members"])
        for m in range(members):
            total += self._member_proba(m, X, n)
        return total / members

    def _member_proba(self, m: int, X: np.ndarray, n_classes: int) -> np.ndarray:
        a = self.arrays
        Z = (X - a[f"m{m}_mean"]) / a[f"m{m}_scale"]
        sv, coef, rho = a[f"m{m}_sv"], a[f"m{m}_dual_coef"], a[f"m{m}_intercept"]
        nsv = a[f"m{m}_n_support"]
        gamma = float(a[f"m{m}_gamma"])
        d2 = (Z * Z).sum(axis=1)[:, None] + (sv * sv).sum(axis=1)[None, :] - 2.0 * (Z @ sv.T)
        K = np.exp(-gamma * np.maximum(d2, 0.0))
        k = len(nsv)  # classes of this member's SVC
        starts = np.concatenate([[0], np.cumsum(nsv)])
        dec = np.empty((X.shape[0], k * (k - 1) // 2))
        p = 0
        for i in range(k):  # libsvm's one-vs-one decision values
            si = slice(starts[i], starts[i + 1])
            for j in range(i + 1, k):
                sj = slice(starts[j], starts[j + 1])
                dec[:, p] = K[:, si] @ coef[j - 1, si] + K[:, sj] @ coef[i, sj] + rho[p]
                p += 1
        if k == 2:
            scores = -dec  # sklearn flips the binary decision function's sign
        else:  # sklearn.utils.multiclass._ovr_decision_function(dec < 0, -dec, k)
            votes = np.zeros((X.shape[0], k))
            conf = np.zeros((X.shape[0], k))
            p = 0
            for i in range(k):
                for j in range(i + 1, k):
                    conf[:, i] += dec[:, p]
                    conf[:, j] -= dec[:, p]
                    votes[dec[:, p] >= 0, i] += 1
                    votes[dec[:, p] < 0, j] += 1
                    p += 1
            scores = votes + conf / (3 * (np.abs(conf) + 1))
        proba = np.zeros((X.shape[0], n_classes))
        pos, ca, cb = a[f"m{m}_pos"], a[f"m{m}_a"], a[f"m{m}_b"]
        for c in range(scores.shape[1]):
            idx = int(pos[c]) + (1 if n_classes == 2 else 0)
            proba[:, idx] = _expit(-(ca[c] * scores[:, c] + cb[c]))
        if n_classes == 2:
            proba[:, 0] = 1.0 - proba[:, 1]
            return proba
        den = proba.sum(axis=1, keepdims=True)
        return np.divide(proba, den, out=np.full_like(proba, 1.0 / n_classes), where=den != 0)


def load_light(model_dir: str | Path, card: dict[str, Any] | None = None) -> LightModel | None:
    """The light form of ``models/<name>/`` when its card names one (``light_file`` +
    ``light_sha256``), else ``None``. Imports neither scikit-learn nor skops. A light file whose
    hash differs from the card, or that is not a plain-array ``.npz``, is refused, and so is an
    artifact whose main model file no longer matches the card's ``model_sha256``."""
    from mgr.utils import file_hash

    model_dir = Path(model_dir)
    if card is None:
        card = read_card(model_dir)
    name, sha = card.get("light_file"), card.get("light_sha256")
    if not name or not sha:
        return None
    if name != LIGHT_FILE:
        raise ArtifactError(f"{model_dir / CARD_FILE}: light_file must be {LIGHT_FILE!r}, got {name!r}")
    path = model_dir / LIGHT_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} not found (the card names it as the light model)")
    if file_hash(path) != sha:
        raise ArtifactError(f"{path} does not match the sha256 in its model card (modified or corrupt); refusing to load it")
    # the artifact as a whole must be intact: a replaced model.skops is refused here too, even
    # though the light route never reads it (a hash only: no skops/sklearn import)
    main = model_dir / card["model_file"]
    if not main.is_file():
        raise ArtifactError(f"{main} not found (the card names it as the model file)")
    _check_hash(main, card.get("model_sha256"))
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise ArtifactError(f"{path} is not a plain NumPy archive ({type(e).__name__}: {e})") from None
    kind = str(arrays.get("kind", ""))
    if kind not in ("svm", "logreg") or int(arrays.get("format", -1)) != LIGHT_FORMAT:
        raise ArtifactError(f"{path}: not an mgr light model (kind {kind!r})")
    model = LightModel(arrays)
    if model.n_classes != len(card["labels"]):
        raise ArtifactError(f"{path}: {model.n_classes} classes but the card lists {len(card['labels'])} labels")
    if model.n_features != len(card["feature_columns"]):
        raise ArtifactError(f"{path}: takes {model.n_features} features but the card lists {len(card['feature_columns'])}")
    return model
