"""The classical estimators: the registry (name -> how to build it from ``ml.<name>``) and the
hyper-parameter search through scikit-learn's searchers (see :mod:`mgr.models.classical` for the
protocol). scikit-learn and XGBoost are imported inside the functions.

Registry (:data:`REGISTRY`, name -> :class:`ModelSpec`):

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

Search (``ml.search``: ``grid`` or ``random`` over ``ml.<name>.grid``): ``ParameterGrid`` /
``ParameterSampler`` candidates scored by ``GridSearchCV`` with stratified ``ml.search_cv``-fold
cross-validation on the train rows only, balanced accuracy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mgr.errors import DataError, ParamsError
from mgr.params import MlParams, params_from_dict


def proba(model: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_proba(X), dtype=np.float64)


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


def cap_calibration_folds(name: str, model: Any, y: np.ndarray) -> None:
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
            cap_calibration_folds(self.name, self.model_, y)
            self.model_.fit(X, y)
            self.classes_ = self.model_.classes_
            return self

        def predict(self, X: np.ndarray) -> np.ndarray:
            return self.classes_[proba(self.model_, X).argmax(axis=1)]

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
